"""Staff-area fixtures: a signed-in staff member, a signed-in reader who is not staff, and
an edition with stories and confirmed readers."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from newsletter.auth.session import session_values
from newsletter.db import utcnow
from newsletter.editions.assembly import assemble
from newsletter.editions.models import Edition
from newsletter.readers.models import Reader, ReaderStatus
from newsletter.stories.importing import import_stories
from tests.smtp_server import SmtpServer
from tests.tracking.conftest import NOW, OUTLETS, make_reader, story_doc

STAFF = "editor@example.com"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def make_staff(app: Flask, email: str) -> None:
    with app.extensions["db"].session() as session:
        session.scalar(select(Reader).where(Reader.email_key == email)).is_staff = True


def signed_in_as(client: FlaskClient, app: Flask, email: str, *, staff: bool) -> int:
    """A confirmed reader made directly, and the client's session signed in as them
    (the sign-in flow itself is tested in tests/auth; the browser test uses it)."""
    with app.extensions["db"].session() as session:
        reader = Reader(
            email=email,
            email_key=email,
            status=ReaderStatus.CONFIRMED,
            # Subscribed a while ago: owed today's edition already (a reader who confirmed
            # this minute gets the next one, see tests/delivery/test_first_week.py).
            confirmed_at=utcnow() - timedelta(days=30),
            is_staff=staff,
        )
        session.add(reader)
        session.flush()
        reader_id = reader.id
        values = session_values(reader)
    with client.session_transaction() as cookie:
        cookie.update(values)
    return reader_id


@pytest.fixture
def staff(app: Flask, client: FlaskClient, smtp: SmtpServer) -> FlaskClient:
    """`client`, signed in as a staff member."""
    signed_in_as(client, app, STAFF, staff=True)
    return client


def token(client: FlaskClient, path: str = "/admin/readers") -> str:
    """The session's CSRF token (the same for every form), read once from a page."""
    cached = getattr(client, "_csrf_token", None)
    if cached is None:
        page = client.get(path).get_data(as_text=True)
        match = _CSRF.search(page)
        assert match, page[:500]
        cached = client._csrf_token = match.group(1)  # type: ignore[attr-defined]
    return cached


def post(client: FlaskClient, path: str, data: dict[str, Any] | None = None, **kw: Any):  # type: ignore[no-untyped-def]
    return client.post(path, data={"csrf_token": token(client), **(data or {})}, **kw)


def build_edition(app: Flask, session, count: int = 4) -> Edition:  # type: ignore[no-untyped-def]
    """Stories and two confirmed readers; today's edition assembled, not sent."""
    docs = [story_doc(n) for n in range(1, count + 1)]
    report = import_stories(session, {"outlets": OUTLETS, "stories": docs}, now=NOW)
    assert not report.rejected
    make_reader(session, "ann@example.com")
    make_reader(session, "bob@example.com")
    session.commit()
    with app.app_context():
        edition = assemble(session, NOW.date(), now=NOW).edition
        session.commit()
    return edition


def fresh(session) -> None:  # type: ignore[no-untyped-def]
    """Forget what the test's session read: the app committed in sessions of its own.
    (After a commit there is no transaction to roll back, so expire explicitly.)"""
    session.rollback()
    session.expire_all()
