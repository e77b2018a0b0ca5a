"""Signup, confirmation, account and unsubscribe pages. Thin: translate, call, commit."""

from __future__ import annotations

import json

from flask import (
    Blueprint,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from flask import session as cookie

from newsletter.auth.session import current_reader, login_required
from newsletter.billing.entitlement import billing_status, plan_of, trial_ends_at
from newsletter.db import db_session
from newsletter.errors import InvalidInput, InvalidToken
from newsletter.readers import services
from newsletter.readers.models import ReaderStatus
from newsletter.timezones import grouped_choices
from newsletter.tracking.meter import free_stories_left
from newsletter.web import limit, request_info

bp = Blueprint("readers", __name__)


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    return render_template(
        "index.html", consent_wording=services.CONSENT_WORDING, latest=_latest_stories()
    )


def _latest_stories() -> list:  # type: ignore[type-arg]
    """A taste of the product on the landing page: the newest stories and their coverage."""
    from sqlalchemy import select
    from sqlalchemy.orm import selectinload

    from newsletter.stories.coverage import coverage
    from newsletter.stories.models import Article, Story

    stories = db_session().scalars(
        select(Story)
        .order_by(Story.published_at.desc())
        .limit(6)
        .options(selectinload(Story.articles).joinedload(Article.outlet))
    )
    return [(story, coverage(story)) for story in stories]


@bp.post("/signup")
def signup():  # type: ignore[no-untyped-def]
    raw = request.form.get("email", "")
    try:
        address = services.normalize_email(raw)
    except InvalidInput as exc:
        limit("signup", None)
        return render_template(
            "index.html",
            error=exc.message,
            email=raw[:254],
            consent_wording=services.CONSENT_WORDING,
            latest=_latest_stories(),
        ), 400
    limit("signup", address)
    session = db_session()
    services.signup(session, address, request.form.get("timezone"), request_info())
    session.commit()
    # The same page for a new, pending, confirmed or unsubscribed address.
    return render_template("signup_sent.html", email=address)


@bp.get("/confirm/<token>")
def confirm(token: str):  # type: ignore[no-untyped-def]
    session = db_session()
    try:
        reader = services.confirm(session, token, request_info())
    except InvalidToken as exc:
        return render_template("link_problem.html", message=exc.message, kind="confirm"), (
            410 if exc.expired else 400
        )
    session.commit()
    return _confirmed_page(reader, token)


def _confirmed_page(reader, token: str, error: str | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    return render_template(
        "confirmed.html",
        reader=reader,
        token=token,
        first_edition=services.first_edition_label(reader),
        timezone_groups=grouped_choices(),
        hours=range(24),
        error=error,
    ), status


@bp.post("/confirm/<token>/delivery")
def confirmed_delivery(token: str):  # type: ignore[no-untyped-def]
    """Set the delivery time right after confirming, with the confirmation link's own
    token: a POST (CSRF-checked), so no link scanner's GET can change anything, and no
    one is signed in by it."""
    session = db_session()
    try:
        reader = services.reader_for_confirm_token(session, token)
    except InvalidToken as exc:
        return render_template("link_problem.html", message=exc.message, kind="confirm"), (
            410 if exc.expired else 400
        )
    if reader.status != ReaderStatus.CONFIRMED:
        return render_template(
            "link_problem.html",
            message="This subscription is not active; sign in to manage it.",
            kind="confirm",
        ), 400
    try:
        services.update_delivery(
            session, reader, request.form.get("delivery_hour", ""), request.form.get("timezone", "")
        )
    except InvalidInput as exc:
        session.rollback()
        return _confirmed_page(reader, token, exc.message, 400)
    session.commit()
    flash(f"Saved. Your email arrives at {reader.delivery_hour:02d}:00 {reader.timezone}.", "ok")
    return _confirmed_page(reader, token)


@bp.route("/unsubscribe/<token>", methods=["GET", "POST"])
def unsubscribe(token: str):  # type: ignore[no-untyped-def]
    session = db_session()
    try:
        reader = services.reader_for_unsubscribe_token(session, token)
    except InvalidToken as exc:
        return render_template("link_problem.html", message=exc.message, kind="unsubscribe"), 400
    if request.method != "POST":
        # A GET or HEAD never unsubscribes: mail scanners open every link.
        return render_template("unsubscribe.html", reader=reader, token=token)
    # RFC 8058 one-click: no cookie, no CSRF token, no redirect; answer 200.
    services.unsubscribe(session, reader, request_info())
    session.commit()
    return render_template("unsubscribed.html", reader=reader)


def _account_page(error: str | None = None, status: int = 200):  # type: ignore[no-untyped-def]
    reader = current_reader()
    assert reader is not None  # noqa: S101 (the views calling this are login_required)
    return render_template(
        "account.html",
        reader=reader,
        statuses=ReaderStatus,
        timezone_groups=grouped_choices(),
        hours=range(24),
        me=me_payload(reader),
        billing=billing_status(db_session(), reader),  # type: ignore[arg-type]
        unsubscribe_url=services.unsubscribe_url(reader),
        error=error,
    ), status


@bp.get("/account")
@login_required
def account():  # type: ignore[no-untyped-def]
    return _account_page()


@bp.post("/account/delivery")
@login_required
def update_delivery():  # type: ignore[no-untyped-def]
    reader = current_reader()
    session = db_session()
    try:
        services.update_delivery(
            session, reader, request.form.get("delivery_hour", ""), request.form.get("timezone", "")
        )
    except InvalidInput as exc:
        session.rollback()
        return _account_page(exc.message, 400)
    session.commit()
    flash(
        f"Saved. Your email now arrives at {reader.delivery_hour:02d}:00 {reader.timezone}.", "ok"
    )
    return redirect(url_for("readers.account"), 303)


@bp.post("/account/unsubscribe")
@login_required
def account_unsubscribe():  # type: ignore[no-untyped-def]
    session = db_session()
    services.unsubscribe(session, current_reader(), request_info())
    session.commit()
    flash("You are unsubscribed. You will get no more daily emails.", "ok")
    return redirect(url_for("readers.account"), 303)


@bp.post("/account/resubscribe")
@login_required
def account_resubscribe():  # type: ignore[no-untyped-def]
    session = db_session()
    try:
        services.resubscribe(session, current_reader(), request_info())
    except InvalidInput as exc:
        session.rollback()
        return _account_page(exc.message, 400)
    session.commit()
    flash("Welcome back! Your daily email starts again tomorrow.", "ok")
    return redirect(url_for("readers.account"), 303)


def me_payload(reader) -> dict:  # type: ignore[no-untyped-def]
    """`/api/me`: the signed-in reader as JSON, with the fields the README lists."""
    session = db_session()
    trial_end = trial_ends_at(session, reader.id)
    return {
        "email": reader.email,
        "status": reader.status.value,
        "plan": plan_of(session, reader.id).value,
        "free_stories_per_month": current_app.config["FREE_STORIES_PER_MONTH"],
        "free_stories_left": free_stories_left(session, reader),
        "trial_ends_at": trial_end.isoformat() if trial_end else None,
        "delivery_hour": reader.delivery_hour,
        "timezone": reader.timezone,
    }


@bp.get("/api/me")
@login_required
def api_me():  # type: ignore[no-untyped-def]
    return jsonify(me_payload(current_reader()))


# --- the reader's data rights: download, delete ------------------------------------------


@bp.get("/account/data.json")
@login_required
def account_data():  # type: ignore[no-untyped-def]
    from newsletter.readers.data import reader_data

    body = json.dumps(reader_data(db_session(), current_reader()), indent=2, sort_keys=True)
    response = current_app.response_class(body, mimetype="application/json")
    response.headers["Content-Disposition"] = 'attachment; filename="both-sides-daily-data.json"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/account/delete")
@login_required
def account_delete_request():  # type: ignore[no-untyped-def]
    from newsletter.readers.erasure import request_erasure

    session = db_session()
    reader = current_reader()
    if not request_erasure(session, reader):
        return _account_page(
            "We can't send email to this address, so we can't confirm the deletion by email. "
            "Please write to us from it and we will delete your account.",
            400,
        )
    session.commit()
    return render_template("erase_sent.html", reader=reader)


@bp.route("/account/delete/<token>", methods=["GET", "POST"])
def account_delete(token: str):  # type: ignore[no-untyped-def]
    from newsletter.admin.services import audit_as
    from newsletter.readers.erasure import erase_reader, reader_for_erase_token

    session = db_session()
    try:
        reader = reader_for_erase_token(session, token)
    except InvalidToken as exc:
        return render_template("link_problem.html", message=exc.message, kind="erase"), 400
    if request.method != "POST":
        # A GET never erases: mail scanners open every link.
        return render_template("erase_confirm.html", reader=reader, token=token)
    erase_reader(session, reader)
    audit_as(session, "the reader (self-service)", "reader.erase", "", "at the reader's request")
    session.commit()
    cookie.clear()  # the erasure already ended every session of theirs server-side
    return render_template("erased.html")
