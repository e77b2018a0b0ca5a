"""Who is signed in.

The Flask session cookie (signed, HttpOnly) holds the reader id, the reader's
`session_version` at sign-in (`sv`) and when the session was last used (`seen`, epoch
seconds). Every request that loads the signed-in reader (`current_reader`) checks them:

- `sv` must equal the reader's current `session_version`. Sign-out bumps it, which ends
  every session of the reader at once, in this browser and any other, including a
  copied cookie. There is one version per reader, so there is no signing out of one
  browser only; "Sign out everywhere" on the account page is the same act, named for the
  reader who left a session open on a machine they cannot reach.
- A staff member's session ends after `STAFF_IDLE_MINUTES` without a request; a
  reader's lasts 30 days from the last request (`PERMANENT_SESSION_LIFETIME`, renewed by
  every response). Ending it for being idle touches no other session.
- Staff powers are read from the reader's row on every request, never from the cookie,
  so removing the role ends access at once.

A session that fails a check is cleared, so the browser drops the cookie.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from flask import current_app, g, jsonify, redirect, request, session, url_for
from sqlalchemy import update
from sqlalchemy.orm import Session

from newsletter.db import db_session
from newsletter.readers.models import Reader

# `seen` is rewritten at most this often, so a burst of requests does not change the
# cookie on every one of them.
SEEN_RESOLUTION_SECONDS = 30


def session_values(reader: Reader, *, now: float | None = None) -> dict[str, int]:
    """What a signed-in session cookie holds for `reader` (also for tests that sign a
    client in directly)."""
    return {
        "reader_id": reader.id,
        "sv": reader.session_version,
        "seen": int(time.time() if now is None else now),
    }


def sign_in(reader: Reader) -> None:
    session.clear()  # a fresh session: no fixation
    session.update(session_values(reader))
    session.permanent = True


def end_sessions(db: Session, reader_id: int) -> None:
    """End every session of the reader (their cookies stop working at their next
    request). Flushes; the caller commits."""
    db.execute(
        update(Reader)
        .where(Reader.id == reader_id)
        .values(session_version=Reader.session_version + 1)
        .execution_options(synchronize_session=False)
    )
    db.flush()


def sign_out(db: Session) -> None:
    """End this session and every other session of the signed-in reader, server-side
    (flushed on `db`; the caller commits)."""
    reader = current_reader()
    if reader is not None:
        end_sessions(db, reader.id)
    session.clear()
    g.reader = None


def signed_in_reader_id() -> int | None:
    """The reader id the session cookie claims, without loading the reader. Not proof
    that the session is still valid: anything that acts as the reader, or shows
    anything of theirs, uses `current_reader`."""
    reader_id = session.get("reader_id")
    return reader_id if isinstance(reader_id, int) else None


def _session_reader() -> Reader | None:
    reader_id = signed_in_reader_id()
    if reader_id is None:
        return None
    reader = db_session().get(Reader, reader_id)
    version = session.get("sv")
    if reader is None or not isinstance(version, int) or reader.session_version != version:
        session.clear()  # signed out elsewhere, or a copy of an ended session
        return None
    now = int(time.time())
    seen = session.get("seen")
    if reader.is_staff:
        idle_limit = current_app.config["STAFF_IDLE_MINUTES"] * 60
        if not isinstance(seen, int) or now - seen > idle_limit:
            session.clear()
            return None
    if not isinstance(seen, int) or now - seen >= SEEN_RESOLUTION_SECONDS:
        session["seen"] = now
    return reader


def current_reader() -> Reader | None:
    """The signed-in reader, once the session passed its checks (see the module)."""
    if "reader" not in g:
        g.reader = _session_reader()
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
