"""Who is signed in. The Flask session cookie holds the reader id and their sign-in nonce
at sign-in time; a newer sign-in elsewhere does not log this one out, but sign-out does."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import g, jsonify, redirect, request, session, url_for

from newsletter.db import db_session
from newsletter.readers.models import Reader


def sign_in(reader: Reader) -> None:
    session.clear()  # a fresh session: no fixation
    session["reader_id"] = reader.id
    session.permanent = True


def sign_out() -> None:
    session.clear()


def signed_in_reader_id() -> int | None:
    """The signed-in reader's id, without loading the reader."""
    reader_id = session.get("reader_id")
    return reader_id if isinstance(reader_id, int) else None


def current_reader() -> Reader | None:
    if "reader" not in g:
        reader_id = signed_in_reader_id()
        g.reader = db_session().get(Reader, reader_id) if reader_id is not None else None
    return g.reader


def login_required(view: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        if current_reader() is None:
            if request.path.startswith("/api/"):
                return jsonify(error="not signed in"), 401
            return redirect(url_for("auth.signin", next=request.path))
        return view(*args, **kwargs)

    return wrapped
