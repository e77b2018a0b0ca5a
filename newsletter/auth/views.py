"""Sign-in by email link, and sign-out."""

from __future__ import annotations

from flask import Blueprint, redirect, render_template, request, url_for

from newsletter.auth import services
from newsletter.auth.session import sign_in, sign_out
from newsletter.db import db_session
from newsletter.errors import InvalidInput, InvalidToken
from newsletter.readers.services import normalize_email
from newsletter.web import limit, safe_next

bp = Blueprint("auth", __name__)


@bp.get("/signin")
def signin():  # type: ignore[no-untyped-def]
    return render_template("signin.html", next=safe_next(request.args.get("next"), ""))


@bp.post("/signin")
def signin_request():  # type: ignore[no-untyped-def]
    raw = request.form.get("email", "")
    try:
        address = normalize_email(raw)
    except InvalidInput as exc:
        limit("signin", None)
        return render_template("signin.html", error=exc.message, email=raw[:254]), 400
    limit("signin", address)
    session = db_session()
    services.request_signin(session, address)
    session.commit()
    return render_template("signin_sent.html", email=address)


@bp.get("/signin/<token>")
def signin_link(token: str):  # type: ignore[no-untyped-def]
    # Only shows a button: a link scanner's GET must not use the link up.
    try:
        reader = services.check_signin_token(db_session(), token)
    except InvalidToken as exc:
        return render_template("link_problem.html", message=exc.message, kind="signin"), (
            410 if exc.expired else 400
        )
    return render_template("signin_confirm.html", reader=reader, token=token)


@bp.post("/signin/<token>")
def signin_consume(token: str):  # type: ignore[no-untyped-def]
    session = db_session()
    try:
        reader = services.consume_signin_token(session, token)
    except InvalidToken as exc:
        session.rollback()
        return render_template("link_problem.html", message=exc.message, kind="signin"), (
            410 if exc.expired else 400
        )
    session.commit()
    sign_in(reader)
    return redirect(safe_next(request.form.get("next")), 303)


@bp.post("/signout")
def signout():  # type: ignore[no-untyped-def]
    sign_out()
    return redirect(url_for("readers.index"), 303)
