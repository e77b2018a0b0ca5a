"""Read confirmations: the same answers whether they are served before Flask
(`newsletter.lean`, a reader known by the reading cookie) or by the Flask view (a
signed-in reader, an unusual request)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from newsletter.app import CONTENT_SECURITY_POLICY, create_app
from newsletter.tokens import Purpose, make_compact
from tests.conftest import TEST_SECRET
from tests.helpers import sign_in
from tests.lean_paths import lean_answers, post_via
from tests.tracking.conftest import reads_count
from tests.tracking.test_meter import BROWSER_UA, confirm, open_story, slug_of, view_token

SCANNER_UA = "Mozilla/5.0 (compatible; Proofpoint URL Defense)"


@pytest.fixture
def app_settings():  # type: ignore[no-untyped-def]
    return {"FREE_STORIES_PER_MONTH": 3}


def assert_security_headers(response) -> None:  # type: ignore[no-untyped-def]
    assert response.headers["Content-Type"] == "application/json"
    assert response.headers["Content-Security-Policy"] == CONTENT_SECURITY_POLICY
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"


@pytest.mark.parametrize("known_by", ["reading cookie", "signed in"])
def test_every_answer_is_the_same_for_a_cookie_reader_and_a_signed_in_one(
    known_by, client, smtp, sent_edition, session
):  # type: ignore[no-untyped-def]
    if known_by == "signed in":
        sign_in(client, smtp, "ann@example.com")
    links = sent_edition.links["ann@example.com"]
    pages = [open_story(client, link) for link in links[:4]]  # all opened while 3 were left
    slugs = [slug_of(page) for page in pages]
    answers = [confirm(client, page, slug) for page, slug in zip(pages, slugs, strict=True)]
    assert [(a.status_code, a.json) for a in answers] == [
        (200, {"charged": True, "allowed": True, "free_left": 2}),
        (200, {"charged": True, "allowed": True, "free_left": 1}),
        (200, {"charged": True, "allowed": True, "free_left": 0}),
        (402, {"charged": False, "allowed": False, "free_left": 0}),
    ]
    again = confirm(client, pages[0], slugs[0])
    assert (again.status_code, again.json) == (
        200,
        {"charged": False, "allowed": True, "free_left": 0},
    )
    token = view_token(pages[0])
    wrong_story = client.post(f"/stories/{slugs[1]}/read", json={"token": token})
    assert (wrong_story.status_code, wrong_story.json) == (
        400,
        {"error": "This view is not valid."},
    )
    forged = client.post(f"/stories/{slugs[0]}/read", json={"token": token[:-2] + "xx"})
    assert forged.status_code == 400 and "error" in forged.json
    scanner = client.post(
        f"/stories/{slugs[0]}/read", json={"token": token}, headers={"User-Agent": SCANNER_UA}
    )
    assert scanner.status_code == 403 and scanner.json["error"] == "not counted"
    for response in (*answers, again, wrong_story, forged, scanner):
        assert_security_headers(response)
    assert reads_count(session) == 3


def test_unusual_requests_get_the_view_s_answers(client, sent_edition, session):  # type: ignore[no-untyped-def]
    links = sent_edition.links["ann@example.com"]
    page = open_story(client, links[0])
    slug = slug_of(page)
    token = view_token(page)
    headers = {"User-Agent": BROWSER_UA}
    assert client.get(f"/stories/{slug}/read").status_code == 405
    assert client.post(f"/stories/{slug}/read/", json={"token": token}).status_code == 404
    no_json = client.post(f"/stories/{slug}/read", data=f"token={token}", headers=headers)
    assert no_json.status_code == 400
    assert reads_count(session) == 0
    # A charset parameter, and a body too large to be read before Flask: both charge.
    charset = client.post(
        f"/stories/{slug}/read",
        data=json.dumps({"token": token}),
        headers={**headers, "Content-Type": "application/json; charset=utf-8"},
    )
    assert charset.json == {"charged": True, "allowed": True, "free_left": 2}
    second = open_story(client, links[1])
    padded = client.post(
        f"/stories/{slug_of(second)}/read",
        json={"token": view_token(second), "pad": "x" * 8000},
        headers=headers,
    )
    assert padded.json == {"charged": True, "allowed": True, "free_left": 1}
    assert reads_count(session) == 2


def test_a_confirmation_while_the_database_is_down_is_a_500_in_json(tmp_path: Path, caplog):  # type: ignore[no-untyped-def]
    """The answer the page's script can read, and the error in the log."""
    app = create_app(
        {
            "DATABASE_URL": "postgresql+psycopg://root@127.0.0.1:9/nowhere?connect_timeout=2",
            "SECRET_KEY": TEST_SECRET,
            "OUTBOX_DIR": str(tmp_path / "outbox"),
            "TESTING": True,
        }
    )
    with app.app_context():
        view = make_compact(Purpose.READ_VIEW, 7, 11, 3, 202611)
        reading = make_compact(Purpose.READING, 7, 3)
    client = app.test_client()
    client.set_cookie("bsd_reading", reading)
    with caplog.at_level(logging.ERROR):
        response = client.post(
            "/stories/some-story/read", json={"token": view}, headers={"User-Agent": BROWSER_UA}
        )
    assert response.status_code == 500
    assert response.json == {"error": "Something went wrong on our side. Please try again."}
    assert_security_headers(response)
    assert "unhandled error" in caplog.text
    app.extensions["click_log"].close()
    app.extensions["db"].dispose()


HOSTILE_BODIES = {
    "4,000 [": b"[" * 4000,
    "4,000 [ closed": b"[" * 4000 + b"]" * 4000,
    "deep inside the token's object": b'{"token": ' + b"[" * 100 + b"]" * 100 + b"}",
    "NaN": b'{"token": NaN}',
    "a float overflowing": b'{"token": 1e400}',
    "a 5,000-digit integer": b'{"token": ' + b"9" * 5000 + b"}",
    "not UTF-8": b'{"token": "caf\xe9"}',
    "not JSON": b'{"token": ',
}


@pytest.mark.parametrize("via", ["lean", "flask, streamed", "flask, session cookie"])
@pytest.mark.parametrize("case", list(HOSTILE_BODIES))
def test_a_body_that_is_not_bounded_json_is_a_400(app, client, session, via, case):  # type: ignore[no-untyped-def]
    """Refused by the one JSON reader (`newsletter.jsonbody`) on every path, in JSON."""
    headers = {"Content-Type": "application/json", "User-Agent": BROWSER_UA}
    if via == "flask, session cookie":
        client.set_cookie(app.config["SESSION_COOKIE_NAME"], "not-a-session")
    with lean_answers(app) as lean:
        response = post_via(
            client, "flask" if via == "flask, streamed" else "lean",
            "/stories/some-story/read", HOSTILE_BODIES[case], headers,
        )  # fmt: skip
    assert response.status_code == 400, response.get_data(as_text=True)
    assert list(response.json) == ["error"]
    assert_security_headers(response)
    # A body over the lean route's 4 KiB is the Flask view's, whichever way it comes.
    before_flask = via == "lean" and len(HOSTILE_BODIES[case]) <= 4096
    assert lean == (["/stories/some-story/read"] if before_flask else [])
    assert reads_count(session) == 0
