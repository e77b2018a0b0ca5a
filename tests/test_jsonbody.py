"""The one JSON body reader (`newsletter.jsonbody`): what it refuses, what it lets through,
and that every route taking JSON answers its refusals with a 400 in JSON."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.jsonbody import MAX_DEPTH, BadJson, nesting_depth, parse_json_body
from tests.billing.fake_stripe import FakeStripe, signed
from tests.lean_paths import VIAS, lean_answers, post_via

DEEP = b"[" * 4000


class TestParse:
    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (DEEP, "nested too deeply"),
            (DEEP + b"]" * 4000, "nested too deeply"),
            (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), "nested too deeply"),
            (b'{"a": ' * 100 + b"1" + b"}" * 100, "nested too deeply"),
            (b'["\\"", ' + DEEP, "nested too deeply"),  # an escaped quote does not hide it
            (b'{"a": NaN}', "NaN is not a JSON number"),
            (b"[Infinity]", "Infinity is not a JSON number"),
            (b"[-Infinity]", "Infinity is not a JSON number"),
            (b"[1e400]", "out of range"),
            (b"9" * 5000, "4300 digits"),
            (b'{"a": "caf\xe9"}', "not UTF-8"),
            (b"\xef\xbb\xbf{}", "Not valid JSON"),  # a BOM
            (b"", "Not valid JSON"),
            (b'{"a": ', "Not valid JSON: Expecting value at line 1 column 7."),
        ],
    )
    def test_refused(self, body: bytes, message: str) -> None:
        with pytest.raises(BadJson, match=message) as refused:
            parse_json_body(body, max_bytes=1 << 20)
        assert refused.value.status_code == 400

    def test_too_large_is_a_413(self) -> None:
        with pytest.raises(BadJson, match="larger than 10 bytes") as refused:
            parse_json_body(b'{"token": "0123456789"}', max_bytes=10)
        assert refused.value.status_code == 413

    @pytest.mark.parametrize(
        "body",
        [
            b"[" * MAX_DEPTH + b"]" * MAX_DEPTH,
            b'{"a": "' + DEEP + b'"}',  # brackets in strings are text
            b'{"a": "\\"' + DEEP + b'"}',
            b'["\\\\", "' + DEEP + b'"]',
            b'{"created": 1e20, "n": -0.5, "id": "evt_\\u0000"}',
        ],
    )
    def test_let_through(self, body: bytes) -> None:
        assert parse_json_body(body, max_bytes=1 << 20) == json.loads(body)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(alphabet='[]{}"\\ ab\x00é'),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner),
    max_leaves=30,
)


def _depth(value: Any) -> int:
    children = value.values() if isinstance(value, dict) else value
    if isinstance(value, dict | list):
        return 1 + max(map(_depth, children), default=0)
    return 0


@settings(max_examples=200, deadline=None, database=None)
@given(value=_json, ascii_only=st.booleans())
def test_the_measured_depth_is_the_documents(value: Any, ascii_only: bool) -> None:
    assert nesting_depth(json.dumps(value, ensure_ascii=ascii_only).encode()) == _depth(value)


# --- every route that takes JSON -----------------------------------------------------------

SECRET = "whsec_test_json_bodies"
TOKEN = "stories-api-token-json-bodies"


@pytest.fixture
def app_settings() -> dict[str, Any]:
    # Billing configured (its refusals come before any call to Stripe) and the stories API.
    return {
        "STRIPE_SECRET_KEY": "sk_test_fake",
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "STRIPE_PRICE_ID": "price_test",
        "STORIES_API_TOKEN": TOKEN,
    }


def _webhook(body: bytes) -> tuple[str, dict[str, str]]:
    _, header = signed(body.decode(), SECRET)
    return "/webhooks/stripe", {"Stripe-Signature": header}


def _confirmation(body: bytes) -> tuple[str, dict[str, str]]:
    return "/stories/some-story/read", {}


def _stories(body: bytes) -> tuple[str, dict[str, str]]:
    return "/api/stories", {"Authorization": f"Bearer {TOKEN}"}


ROUTES = {"webhook": _webhook, "read confirmation": _confirmation, "stories API": _stories}
BODIES = {
    "4,000 [": DEEP,
    "deep inside an event": json.dumps(
        FakeStripe.event("customer.updated", {"id": "cus_1", "deep": [[[[[[[[]]]]]]]]})
    )
    .replace("[[[[[[[[]]]]]]]]", "[" * 500 + "]" * 500)
    .encode(),
    "NaN": b'{"token": NaN}',
}


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("body", list(BODIES))
@pytest.mark.parametrize("route", list(ROUTES))
def test_every_json_route_answers_a_400_in_json(app, client, route, body, via):  # type: ignore[no-untyped-def]
    path, headers = ROUTES[route](BODIES[body])
    response = post_via(
        client, via, path, BODIES[body], {**headers, "Content-Type": "application/json"}
    )
    assert response.status_code == 400, response.get_data(as_text=True)
    expected = "not a JSON number" if body == "NaN" else "nested too deeply"
    assert expected in response.json["error"]


def test_the_lean_routes_answer_before_flask(app, client) -> None:  # type: ignore[no-untyped-def]
    """The tests above reach both paths: "lean" is answered before Flask where a route
    is declared there (the read confirmation; the webhook has none)."""
    with lean_answers(app) as lean:
        for route in ("webhook", "read confirmation"):
            path, headers = ROUTES[route](DEEP)
            post_via(client, "lean", path, DEEP, {**headers, "Content-Type": "application/json"})
            post_via(client, "flask", path, DEEP, {**headers, "Content-Type": "application/json"})
    assert lean == ["/stories/some-story/read"]
