"""Sign-in by email link, and sign-out."""

from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for

from newsletter.auth import services
from newsletter.auth.session import current_reader, login_required, sign_in, sign_out
from newsletter.db import db_session
from newsletter.errors import InvalidInput, InvalidToken
from newsletter.readers.models import Reader
from newsletter.readers.services import normalize_email
from newsletter.tracking.views import READING_COOKIE, reading_cookie
from newsletter.web import limit, safe_next

bp = Blueprint("auth", __name__)


def _why(raw: str | None, next_path: str | None) -> str:
    """Why the reader is asked to sign in: "trial" from the paywall or a plan page."""
    if raw == "trial" or (next_path or "").startswith("/billing/"):
        return "trial"
    return ""


def _known_address() -> str:
    """The address of the reader this browser reads as (a link from their email): what
    they would type anyway."""
    reader_id, _ = reading_cookie()
    reader = db_session().get(Reader, reader_id) if reader_id is not None else None
    return reader.email if reader is not None else ""


@bp.get("/signin")
def signin():  # type: ignore[no-untyped-def]
    next_path = services.signin_next(request.args.get("next"))
    return render_template(
        "signin.html",
        next=next_path or "",
        why=_why(request.args.get("why"), next_path),
        email=_known_address(),
    )


@bp.post("/signin")
def signin_request():  # type: ignore[no-untyped-def]
    raw = request.form.get("email", "")
    next_path = services.signin_next(request.form.get("next"))
    try:
        address = normalize_email(raw)
    except InvalidInput as exc:
        limit("signin", None)
        return render_template(
            "signin.html",
            error=exc.message,
            email=raw[:254],
            next=next_path or "",
            why=_why(request.form.get("why"), next_path),
        ), 400
    limit("signin", address)
    session = db_session()
    services.request_signin(session, address, next_path=next_path)
    session.commit()
    # The same page whatever happened: sent, not sent because one just went out, a
    # confirmation instead, an unknown or a suppressed address. Its wording covers all.
    return render_template(
        "signin_sent.html",
        email=address,
        valid_minutes=current_app.config["SIGNIN_TOKEN_MAX_AGE"] // 60,
    )


def _link_problem(exc: InvalidToken):  # type: ignore[no-untyped-def]
    # A signed-in reader opening a used link (the back button after signing in) is
    # where the link would have taken them: signed in.
    if isinstance(exc, services.LinkUsed) and current_reader() is not None:
        return redirect(url_for("readers.account"), 303)
    return render_template("link_problem.html", message=exc.message, kind="signin"), (
        410 if exc.expired else 400
    )


@bp.get("/signin/<token>")
def signin_link(token: str):  # type: ignore[no-untyped-def]
    # Only shows a button: a link scanner's GET must not use the link up.
    try:
        link = services.check_signin_token(db_session(), token)
    except InvalidToken as exc:
        return _link_problem(exc)
    response = current_app.make_response(
        render_template("signin_confirm.html", reader=link.reader, token=token)
    )
    # Not kept for the back button: going back after signing in asks again, and lands
    # on the account.
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/signin/<token>")
def signin_consume(token: str):  # type: ignore[no-untyped-def]
    session = db_session()
    try:
        link = services.consume_signin_token(session, token)
    except InvalidToken as exc:
        session.rollback()
        return _link_problem(exc)
    session.commit()
    sign_in(link.reader)
    # Where the link was asked from, as signed into it (checked again here); a `next`
    # in the form is not read: the link alone says where it leads.
    return redirect(safe_next(link.next_path), 303)


def _signed_out(message: str):  # type: ignore[no-untyped-def]
    flash(message, "ok")
    response = redirect(url_for("readers.index"), 303)
    # The reading cookie of this browser goes too: who signs out of a shared computer
    # expects it to stop reading as them. Reading cookies in other browsers (set by
    # links in their emails) keep working: they can read stories and nothing else.
    response.delete_cookie(
        READING_COOKIE,
        httponly=True,
        samesite="Lax",
        secure=current_app.config["SESSION_COOKIE_SECURE"],
    )
    return response


@bp.post("/signout")
def signout():  # type: ignore[no-untyped-def]
    session = db_session()
    sign_out(session)
    session.commit()
    return _signed_out("You are signed out, here and in every other browser.")


@bp.post("/signout/everywhere")
@login_required
def signout_everywhere():  # type: ignore[no-untyped-def]
    # The same act as the header's "Sign out" (one session version per reader), named
    # for a reader who left a session open on a machine they cannot reach.
    session = db_session()
    sign_out(session)
    session.commit()
    return _signed_out("You are signed out on every browser and device.")
