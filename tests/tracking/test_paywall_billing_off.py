"""Billing not configured (as after `make run` with Stripe switched off): the paywall and
every page reachable from it, or from the edition email's links, answer without an error
and promise no trial."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from flask.testing import FlaskClient

from newsletter.auth.session import session_values
from newsletter.readers.models import Reader
from tests.tracking.conftest import send_edition
from tests.tracking.test_meter import confirm, open_story, slug_of

_HREF = re.compile(r'href="([^"]+)"')
BASE = "http://localhost"


@pytest.fixture
def app_settings() -> dict[str, Any]:
    return {"FREE_STORIES_PER_MONTH": 1}


def _walk(client: FlaskClient, start: list[str], depth: int = 2) -> dict[str, int]:
    """GET every same-site link from `start`, `depth` clicks deep; {path: status}."""
    seen: dict[str, int] = {}
    frontier = [u.removeprefix(BASE) for u in start]
    for _ in range(depth + 1):
        following: list[str] = []
        for path in frontier:
            if not path.startswith("/") or path.startswith("//") or path in seen:
                continue
            response = client.get(path, follow_redirects=True)
            seen[path] = response.status_code
            body = response.get_data(as_text=True)
            assert response.status_code < 400, (path, response.status_code)
            if response.mimetype == "text/html":
                assert "trial" not in body.lower(), path
                following += [h.replace("&amp;", "&") for h in _HREF.findall(body)]
        frontier = [f.removeprefix(BASE) for f in following]
    return seen


def _next_first_of_month() -> str:
    now = datetime.now(UTC)
    first = datetime(now.year + now.month // 12, now.month % 12 + 1, 1)
    return f"{first:%B} 1, {first.year}"


def test_from_the_email_to_the_paywall_and_beyond_nothing_fails_or_promises_a_trial(
    app, client, session, smtp
) -> None:  # type: ignore[no-untyped-def]
    sent = send_edition(app, session, smtp)
    links = sent.links["ann@example.com"]
    [message] = smtp.wait_for("ann@example.com")
    html = message.get_body(("html",)).get_content()
    email_links = [h.replace("&amp;", "&") for h in _HREF.findall(html) if h.startswith(BASE)]

    # One free story read, then the next tracked link lands on the paywall.
    first = open_story(client, links[0])
    assert confirm(client, first, slug_of(first)).json["charged"] is True
    page = open_story(client, links[1])
    body = page.get_data(as_text=True)
    assert page.status_code == 200
    assert "You've read your 1 free story this month" in body
    assert "Every reader gets 1 full story a month." in body
    assert f'<strong id="resets-on">{_next_first_of_month()}</strong>' in body
    assert "trial" not in body.lower()
    assert "/billing/" not in body  # no button to a plan that does not exist
    assert 'href="/signin?next=' in body

    visited = _walk(client, email_links + [page.request.path])
    assert any(p.startswith("/signin") for p in visited)
    assert any(p.startswith("/stories/") for p in visited)


def test_signed_in_reader_at_the_paywall_sees_the_truth_in_their_own_zone(
    app, client, session, smtp
) -> None:  # type: ignore[no-untyped-def]
    send_edition(app, session, smtp)
    reader = session.query(Reader).filter_by(email="bob@example.com").one()
    reader.timezone = "Pacific/Kiritimati"  # UTC+14: already next month's 1st sooner
    session.commit()
    with client.session_transaction() as cookie:
        cookie.update(session_values(reader))
    landing = client.get("/").get_data(as_text=True)
    paths = list(dict.fromkeys(re.findall(r'href="(/stories/[^"]+)"', landing)))
    first = client.get(paths[0])
    assert confirm(client, first, paths[0].rsplit("/", 1)[1]).json["charged"] is True
    path = paths[1]
    body = client.get(path).get_data(as_text=True)
    assert "You've read your 1 free story this month" in body
    assert "(your time, Pacific/Kiritimati)" in body
    local = datetime.now(UTC).astimezone(__import__("zoneinfo").ZoneInfo("Pacific/Kiritimati"))
    first = datetime(local.year + local.month // 12, local.month % 12 + 1, 1)
    assert f"{first:%B} 1, {first.year}" in body
    assert "trial" not in body.lower()
    _walk(client, [path])


def test_an_old_plan_link_says_there_is_no_plan(client) -> None:  # type: ignore[no-untyped-def]
    response = client.get("/billing/start/some-story")
    body = response.get_data(as_text=True)
    assert response.status_code == 200
    assert "This site has no paid plan." in body
    assert "trial" not in body.lower()
