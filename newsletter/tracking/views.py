"""Tracked links, story pages and read confirmations. Thin: verify, call services, commit."""

from __future__ import annotations

from flask import Blueprint, Flask, current_app, jsonify, redirect, render_template, request
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from newsletter import metrics
from newsletter.auth.session import current_reader, signed_in_reader_id
from newsletter.db import db_session, get_db, utcnow
from newsletter.errors import InvalidToken, NotFound
from newsletter.jsonbody import BadJson, error_answer, parse_json_body, request_json
from newsletter.lean import LeanRequest, fast_path
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
from newsletter.stories.review import publicly_readable
from newsletter.tokens import Purpose, link_signer, make_compact, read_compact
from newsletter.tracking import services
from newsletter.tracking.bots import verdict
from newsletter.tracking.clicklog import ClickLog
from newsletter.tracking.meter import (
    Access,
    access_for,
    charge_read,
    month_number,
    month_of_number,
    next_reset,
)

bp = Blueprint("tracking", __name__)

READING_COOKIE = "bsd_reading"
READING_MAX_AGE = 30 * 24 * 3600
VIEW_TOKEN_MAX_AGE = 3600


def visitor_kind(bot: bool) -> str:
    return "bot" if bot else "human"


def _not_found():  # type: ignore[no-untyped-def]
    return render_template("error.html", status=404, message="This link is not valid."), 404


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    db = app.extensions["db"]
    app.extensions["click_log"] = ClickLog(
        db.sessionmaker, services.write_clicks, flush_seconds=app.config["CLICK_FLUSH_SECONDS"]
    )
    app.extensions["link_targets"] = services.LinkTargets()


@bp.route("/r/<token>", methods=["GET", "HEAD"])
def tracked_link(token: str):  # type: ignore[no-untyped-def]
    """Log the click and redirect to the story. Never charges the meter.

    No database work when the link's story is known to this process: the click is
    buffered and written in a batch (`clicklog`)."""
    try:
        claims = link_signer().verify(token)
    except InvalidToken:
        return _not_found()
    slug = current_app.extensions["link_targets"].slug(db_session, claims)
    if slug is None:
        return _not_found()
    click_log = current_app.extensions["click_log"]
    threaded = request.environ.get("wsgi.multithread", True)
    user_agent = request.headers.get("User-Agent")
    click_log.record(
        services.pending_click(
            claims, method=request.method, user_agent=user_agent, ip=request.remote_addr
        ),
        threaded=threaded,
    )
    metrics.CLICKS.labels(visitor_kind(verdict(request.method, user_agent).bot)).inc()
    response = redirect(f"/stories/{slug}", 302)
    # The reading cookie lets the reader read stories; it cannot manage the account.
    cookie = make_compact(Purpose.READING, claims.reader_id, claims.edition_id)
    response.set_cookie(
        READING_COOKIE,
        cookie,
        max_age=READING_MAX_AGE,
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )
    response.headers["Cache-Control"] = "no-store"
    if not threaded:
        # Once the response has gone out, this thread writes the click buffer if it is due.
        response.call_on_close(click_log.flush_if_due)
    return response


def reading_cookie() -> tuple[int | None, int | None]:
    """(reader, edition) of the request's valid reading cookie, else (None, None)."""
    return reading_viewer(request.cookies.get(READING_COOKIE))


def reading_viewer(raw: str | None) -> tuple[int | None, int | None]:
    """(reader, edition) of a reading cookie's value if it is valid, else (None, None)."""
    if raw:
        try:
            reader_id, edition_id = read_compact(Purpose.READING, raw, max_age=READING_MAX_AGE)
            return reader_id, edition_id
        except InvalidToken:
            pass
    return None, None


def _viewer_id() -> tuple[int | None, int | None]:
    """The reader looking at a story page (signed in, or via a reading cookie) and the
    edition they came from; no database query."""
    cookie_reader, edition = reading_cookie()
    # Without a session cookie nobody is signed in: leave the session untouched (an
    # accessed session costs every response a Vary header and a save).
    has_session = current_app.config["SESSION_COOKIE_NAME"] in request.cookies
    signed_in = signed_in_reader_id() if has_session else None
    if signed_in is not None:
        return signed_in, edition if cookie_reader == signed_in else None
    return cookie_reader, edition


def _viewer() -> tuple[Reader | None, int | None]:
    reader_id, edition = _viewer_id()
    if reader_id is None:
        return None, None
    has_session = current_app.config["SESSION_COOKIE_NAME"] in request.cookies
    if has_session and reader_id == signed_in_reader_id():
        # The session's claim holds only while the session does (signed out elsewhere,
        # a copied cookie, a staff session gone idle): otherwise the reading cookie alone.
        reader = current_reader()
        if reader is not None:
            return reader, edition
        cookie_reader, edition = reading_cookie()
        if cookie_reader is None:
            return None, None
        reader_id = cookie_reader
    return db_session().get(Reader, reader_id), edition


def _load_story(slug: str) -> Story:
    story = db_session().scalar(
        select(Story)
        .where(Story.slug == slug)
        .options(selectinload(Story.articles).joinedload(Article.outlet))
    )
    if story is None or not publicly_readable(db_session(), story):
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
        view_token = make_compact(
            Purpose.READ_VIEW,
            reader.id,  # type: ignore[union-attr]
            story.id,
            edition_id,
            month_number(decision.month),  # type: ignore[arg-type]
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
            resets_on=next_reset(reader.timezone, utcnow()) if reader else None,
        )
    )
    response.headers["Cache-Control"] = "private, no-store"
    return response


def _lean_confirmation(request: LeanRequest) -> tuple[dict[str, object], int] | None:
    """`newsletter.lean`'s handler: a reader known by the reading cookie. A session cookie
    is Flask's to read (only its session knows who is signed in)."""
    if current_app.config["SESSION_COOKIE_NAME"] in request.cookies:
        return None
    try:
        payload = parse_json_body(request.body)  # `max_body` bounded the body
    except BadJson as exc:
        return error_answer(exc)
    token = payload.get("token") if isinstance(payload, dict) else None
    viewer_id, _ = reading_viewer(request.cookies.get(READING_COOKIE))
    return answer_confirmation(
        request.view_args["slug"], token, request.header("User-Agent"), viewer_id
    )


# A token is ~60 bytes: a larger body, or any but JSON, is the Flask view's to answer.
@fast_path(
    bp, "/stories/<slug>/read", methods=["POST"], answer=_lean_confirmation, max_body=4096,
    mimetype="application/json",
)  # fmt: skip
def confirm_read(slug: str):  # type: ignore[no-untyped-def]
    """The story page's script, once the page is visible: charge the read (once).

    Most confirmations are answered before Flask (`_lean_confirmation`, with the same
    `answer_confirmation`); this view gets the rest, such as a signed-in reader's."""
    # Another content type is not a confirmation (as before Flask): no token.
    max_bytes = current_app.config["MAX_CONTENT_LENGTH"]
    try:
        payload = request_json(max_bytes) if request.is_json else None
    except BadJson as exc:
        body, status = error_answer(exc)
        return jsonify(body), status
    token = payload.get("token") if isinstance(payload, dict) else None
    viewer_id, _ = _viewer_id()
    body, status = answer_confirmation(slug, token, request.headers.get("User-Agent"), viewer_id)
    return jsonify(body), status


def answer_confirmation(
    slug: str, token: object, user_agent: str | None, viewer_id: int | None
) -> tuple[dict[str, object], int]:
    """A read confirmation's JSON answer and status: `token` is the page's per-view token,
    `viewer_id` the reader the request's cookies name."""
    try:
        reader_id, story_id, edition_id, month = read_compact(
            Purpose.READ_VIEW, str(token or ""), max_age=VIEW_TOKEN_MAX_AGE
        )
    except InvalidToken as exc:
        metrics.READS.labels("unknown", "invalid").inc()
        return {"error": exc.message}, 400
    bot = verdict("POST", user_agent)
    visitor = visitor_kind(bot.bot)
    if bot.bot and bot.reason and bot.reason.startswith("scanner"):
        metrics.READS.labels(visitor, "refused").inc()
        return {"error": "not counted", "reason": bot.reason}, 403
    if viewer_id is None or viewer_id != reader_id:
        metrics.READS.labels(visitor, "refused").inc()
        return {"error": "This view belongs to someone else."}, 403
    with get_db().autocommit() as connection:
        result = charge_read(
            connection,
            reader_id,
            slug,
            story_id,  # type: ignore[arg-type]
            month=month_of_number(month),  # type: ignore[arg-type]
            edition_id=edition_id,
            now=utcnow(),
        )
    if result is None:
        metrics.READS.labels(visitor, "invalid").inc()
        return {"error": "This view is not valid."}, 400
    outcome = "charged" if result.charged else "free" if result.allowed else "over_limit"
    metrics.READS.labels(visitor, outcome).inc()
    return {
        "charged": result.charged,
        "allowed": result.allowed,
        "free_left": result.free_left,
    }, 200 if result.allowed else 402
