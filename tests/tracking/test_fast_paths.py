"""Every route with a fast path (`newsletter.lean`) answers as its Flask view does: the
same requests reach it (its matcher is the view's own werkzeug rule) and the same
request gets the same status, JSON body and headers through either path."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from werkzeug.exceptions import HTTPException
from werkzeug.test import EnvironBuilder, run_wsgi_app

from tests.lean_paths import lean_answers
from tests.tracking.conftest import Sent
from tests.tracking.test_meter import BROWSER_UA, open_story, slug_of, view_token

SCANNER_UA = "Mozilla/5.0 (compatible; Proofpoint URL Defense)"
# Differ by path for the same request only in their length (the JSON's spacing).
INSIGNIFICANT = {"content-length"}


@pytest.fixture
def app_settings():  # type: ignore[no-untyped-def]
    return {"FREE_STORIES_PER_MONTH": 3}


@dataclass(frozen=True)
class Call:
    path: str
    body: bytes
    headers: dict[str, str]
    lean: bool  # whether the fast path answers it (else it leaves it to the view)


@dataclass(frozen=True)
class Viewer:
    """A reader who opened two stories: their reading cookie, slugs and view tokens."""

    cookie: str
    slugs: list[str]
    tokens: list[str]


def viewer(client: FlaskClient, links: list[str]) -> Viewer:
    pages = [open_story(client, link) for link in links[:2]]
    cookie = client.get_cookie("bsd_reading")
    assert cookie is not None
    return Viewer(cookie.value, [slug_of(p) for p in pages], [view_token(p) for p in pages])


def confirmation_calls(v: Viewer) -> list[Call]:
    """Read confirmations, in order: a first read, a re-read, then bad requests."""
    cookie = f"bsd_reading={v.cookie}"
    ok = {"Content-Type": "application/json", "User-Agent": BROWSER_UA, "Cookie": cookie}

    def call(slug: str, body: Any, lean: bool = True, **headers: str) -> Call:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        return Call(f"/stories/{slug}/read", data, {**ok, **headers}, lean)

    token, slug = v.tokens[0], v.slugs[0]
    return [
        call(slug, {"token": token}),
        call(slug, {"token": token}),  # read already: free
        call(v.slugs[1], {"token": token}),  # another story's page
        call("no-such-story", {"token": token}),
        call(slug, {"token": token[:-2] + "xx"}),  # forged
        call(slug, {}),
        call(slug, []),
        call(slug, b"{"),
        call(slug, b'{"token": NaN}'),
        call(slug, b"[" * 300 + b"]" * 300),
        call(slug, {"token": token}, **{"User-Agent": SCANNER_UA}),
        call(slug, {"token": token}, Cookie=""),  # nobody's view
        call(slug, {"token": token}, False, **{"Content-Type": "text/plain"}),
        call(slug, {"token": token, "pad": "x" * 5000}, False),  # over the fast path's limit
        call(slug, {"token": token}, False, Cookie=f"{cookie}; bsd_session=x"),
    ]


# Per fast-path endpoint: the calls for a reader, to run through each path.
CALLS: dict[str, Callable[[Viewer], list[Call]]] = {
    "tracking.confirm_read": confirmation_calls,
}


def answer(wsgi: Any, call: Call) -> tuple[int, Any, dict[str, str]]:
    environ = EnvironBuilder(
        path=call.path, method="POST", data=call.body, headers=call.headers
    ).get_environ()
    body, status, headers = run_wsgi_app(wsgi, environ, buffered=True)
    data = b"".join(body)
    significant = {k.lower(): v for k, v in headers.items() if k.lower() not in INSIGNIFICANT}
    return int(status.split()[0]), json.loads(data), significant


def test_every_fast_path_answers_as_its_view(
    app: Flask, client: FlaskClient, sent_edition: Sent
) -> None:
    lean = app.extensions["lean_routes"]
    assert {route.endpoint for route in lean.routes} == set(CALLS)
    ann = viewer(client, sent_edition.links["ann@example.com"])
    bob = viewer(app.test_client(), sent_edition.links["bob@example.com"])
    for route in lean.routes:
        # Ann's requests take the fast path where it answers, Bob's the same ones the view.
        for fast, slow in zip(CALLS[route.endpoint](ann), CALLS[route.endpoint](bob), strict=True):
            with lean_answers(app) as answered:
                by_lean = answer(lean, fast)
            assert answered == ([fast.path] if fast.lean else []), fast
            by_view = answer(lean.inner, slow)
            assert by_lean == by_view, fast


PIECES = ["stories", "read", "some-story", "a.b", "", "%2F", "..", "ü", "r", "7", " "]


@settings(max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    pieces=st.lists(st.sampled_from(PIECES), min_size=1, max_size=5),
    method=st.sampled_from(["POST", "GET", "PUT", "OPTIONS"]),
)
def test_a_fast_path_takes_exactly_the_requests_its_view_s_rule_routes(
    app: Flask, pieces: list[str], method: str
) -> None:
    lean = app.extensions["lean_routes"]
    path = "/" + "/".join(pieces)
    try:
        endpoint, args = app.url_map.bind("localhost").match(path, method)
    except HTTPException:
        endpoint, args = None, {}
    found = lean.match(path, method)
    if found is not None:
        assert (found[0].endpoint, found[1]) == (endpoint, args)
    else:  # Flask's, where the path is not ASCII (the fast path leaves those to it)
        fast = {r.endpoint for r in lean.routes if method in r.methods}
        assert endpoint not in fast or not path.isascii()
