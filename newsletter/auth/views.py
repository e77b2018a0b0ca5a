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
    return render_template("signin.html", next=services.signin_next(request.args.get("next")) or "")


@bp.post("/signin")
def signin_request():  # type: ignore[no-untyped-def]
    raw = request.form.get("email", "")
    next_path = services.signin_next(request.form.get("next"))
    try:
        address = normalize_email(raw)
    except InvalidInput as exc:
        limit("signin", None)
        return render_template(
            "signin.html", error=exc.message, email=raw[:254], next=next_path or ""
        ), 400
    limit("signin", address)
    session = db_session()
    services.request_signin(session, address, next_path=next_path)
    session.commit()
    return render_template("signin_sent.html", email=address)


@bp.get("/signin/<token>")
def signin_link(token: str):  # type: ignore[no-untyped-def]
    # Only shows a button: a link scanner's GET must not use the link up.
    try:
        link = services.check_signin_token(db_session(), token)
    except InvalidToken as exc:
        return render_template("link_problem.html", message=exc.message, kind="signin"), (
            410 if exc.expired else 400
        )
    return render_template("signin_confirm.html", reader=link.reader, token=token)


@bp.post("/signin/<token>")
def signin_consume(token: str):  # type: ignore[no-untyped-def]
    session = db_session()
    try:
        link = services.consume_signin_token(session, token)
    except InvalidToken as exc:
        session.rollback()
        return render_template("link_problem.html", message=exc.message, kind="signin"), (
            410 if exc.expired else 400
        )
    session.commit()
    sign_in(link.reader)
    # Where the link was asked from, as signed into it (checked again here); a `next`
    # in the form is not read: the link alone says where it leads.
    return redirect(safe_next(link.next_path), 303)


@bp.post("/signout")
def signout():  # type: ignore[no-untyped-def]
    sign_out()
    return redirect(url_for("readers.index"), 303)
