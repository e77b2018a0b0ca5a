"""Tracked links, story pages and read confirmations. Thin: verify, call services, commit."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, current_app, jsonify, redirect, render_template, request
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from newsletter.auth.session import current_reader
from newsletter.db import db_session, utcnow
from newsletter.errors import InvalidToken, NotFound
from newsletter.readers.models import Reader
from newsletter.stories.coverage import coverage
from newsletter.stories.models import Article, Story
from newsletter.stories.presentation import (
    BIAS_LABELS,
    FACTUALITY_LABELS,
    history,
    outlets_of,
    side_groups,
    unrated_articles,
)
from newsletter.tokens import Purpose, link_signer, make_token, read_token
from newsletter.tracking import services
from newsletter.tracking.bots import verdict
from newsletter.tracking.meter import Access, access_for, charge_read

bp = Blueprint("tracking", __name__)

READING_COOKIE = "bsd_reading"
READING_MAX_AGE = 30 * 24 * 3600
VIEW_TOKEN_MAX_AGE = 3600


def _not_found():  # type: ignore[no-untyped-def]
    return render_template("error.html", status=404, message="This link is not valid."), 404


@bp.route("/r/<token>", methods=["GET", "HEAD"])
def tracked_link(token: str):  # type: ignore[no-untyped-def]
    """Log the click and redirect to the story. Never charges the meter."""
    try:
        claims = link_signer().verify(token)
    except InvalidToken:
        return _not_found()
    session = db_session()
    target = services.resolve_link(session, claims)
    if target is None:
        return _not_found()
    services.log_click(
        session,
        target,
        method=request.method,
        user_agent=request.headers.get("User-Agent"),
        ip=request.remote_addr,
    )
    session.commit()
    response = redirect(f"/stories/{target.slug}", 302)
    # The reading cookie lets the reader read stories; it cannot manage the account.
    cookie = make_token(Purpose.READING, {"r": target.reader_id, "e": target.edition_id})
    response.set_cookie(
        READING_COOKIE,
        cookie,
        max_age=READING_MAX_AGE,
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )
    response.headers["Cache-Control"] = "no-store"
    return response


def _viewer() -> tuple[Reader | None, int | None]:
    """The reader looking at a story page (signed in, or via a reading cookie) and the
    edition they came from."""
    signed_in = current_reader()
    raw = request.cookies.get(READING_COOKIE)
    claims: dict[str, Any] = {}
    if raw:
        try:
            claims = read_token(Purpose.READING, raw, max_age=READING_MAX_AGE)
        except InvalidToken:
            claims = {}
    if signed_in is not None:
        edition = claims.get("e") if claims.get("r") == signed_in.id else None
        return signed_in, edition
    reader_id = claims.get("r")
    if not isinstance(reader_id, int):
        return None, None
    return db_session().get(Reader, reader_id), claims.get("e")


def _load_story(slug: str) -> Story:
    story = db_session().scalar(
        select(Story)
        .where(Story.slug == slug)
        .options(selectinload(Story.articles).joinedload(Article.outlet))
    )
    if story is None:
        raise NotFound("We couldn't find that story.")
    return story


@bp.get("/stories/<slug>")
def story_page(slug: str):  # type: ignore[no-untyped-def]
    session = db_session()
    story = _load_story(slug)
    reader, edition_id = _viewer()
    decision = access_for(session, reader, story)
    view_token = None
    if decision.access == Access.FREE_STORY:
        view_token = make_token(
            Purpose.READ_VIEW,
            {"r": reader.id, "s": story.id, "e": edition_id},  # type: ignore[union-attr]
        )
    if decision.access == Access.PAYWALL:
        bot = verdict(request.method, request.headers.get("User-Agent"))
        if not bot.bot:
            services.record_paywall_impression(session, reader, story, edition_id)  # type: ignore[arg-type]
            session.commit()
    response = current_app.make_response(
        render_template(
            "story.html",
            story=story,
            cov=coverage(story),
            groups=side_groups(story),
            unrated=unrated_articles(story),
            outlets=outlets_of(story),
            history=history(story),
            decision=decision,
            access=Access,
            reader=reader,
            view_token=view_token,
            bias_labels=BIAS_LABELS,
            factuality_labels=FACTUALITY_LABELS,
            price=current_app.config.get("PRICE_LABEL", "$5/month"),
            trial_days=current_app.config["TRIAL_DAYS"],
        )
    )
    response.headers["Cache-Control"] = "private, no-store"
    return response


@bp.post("/stories/<slug>/read")
def confirm_read(slug: str):  # type: ignore[no-untyped-def]
    """The story page's script, once the page is visible: charge the read (once)."""
    payload = request.get_json(silent=True) or {}
    token = payload.get("token") if isinstance(payload, dict) else None
    try:
        claims = read_token(Purpose.READ_VIEW, str(token or ""), max_age=VIEW_TOKEN_MAX_AGE)
    except InvalidToken as exc:
        return jsonify(error=exc.message), 400
    bot = verdict("POST", request.headers.get("User-Agent"))
    if bot.bot and bot.reason and bot.reason.startswith("scanner"):
        return jsonify(error="not counted", reason=bot.reason), 403
    session = db_session()
    found = services.confirmation_target(session, claims.get("r"), slug, claims.get("e"))
    if found is None or found.story_id is None or found.story_id != claims.get("s"):
        return jsonify(error="This view is not valid."), 400
    reader = found.reader
    viewer, _ = _viewer()
    if viewer is None or viewer.id != reader.id:
        return jsonify(error="This view belongs to someone else."), 403
    if session.get_bind().dialect.name == "sqlite":
        session.commit()  # start the charge in a fresh transaction (see charge_read)
    result = charge_read(session, reader, found.story_id, edition_id=found.edition_id, now=utcnow())
    session.commit()
    status = 200 if result.allowed else 402
    return jsonify(
        charged=result.charged, allowed=result.allowed, free_left=result.free_left
    ), status
