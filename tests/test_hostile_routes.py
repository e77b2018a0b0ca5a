"""Every route the app registers, walked with hostile input: no request may end in a 5xx.

The routes come from `app.url_map` and the lean fast routes (`newsletter.lean`), never
from a hand list, so a route added later is walked too. Each is sent every method it
allows, as an anonymous visitor (with a reading cookie, so the fast read confirmation
gets past its cookie check), a signed-in reader and signed-in staff, with real CSRF
tokens, the stories API's bearer token and a valid Stripe signature on every body, so
that requests get past the front doors and into the views.

Values are chosen per converter and per parameter, not as a cartesian product: every
path argument alone with each hostile value, every parameter the view's code reads
alone with each hostile value (in the query string, and in the form for a POST), all of
them at once, and a set of hostile bodies (deep JSON, wrong types, huge numbers, wrong
content types, empty bodies).
"""

from __future__ import annotations

import inspect
import json
import re
import sys
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, urlencode

import pytest
import stripe
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select
from werkzeug.routing import IntegerConverter, PathConverter, Rule

from newsletter.db import utcnow
from newsletter.editions.models import Edition
from newsletter.readers.models import Reader, ReaderStatus
from newsletter.tokens import Purpose, link_signer, make_compact, make_token
from newsletter.tracking.meter import month_number
from newsletter.tracking.views import READING_COOKIE
from tests.admin.conftest import build_edition
from tests.billing.conftest import (  # noqa: F401 - fixtures
    PRICE_ID,
    SECRET,
    _fake_stripe_server,
    fake_stripe,
)
from tests.billing.fake_stripe import FakeStripe
from tests.helpers import sign_in
from tests.smtp_server import SmtpServer

API_TOKEN = "walker-api-token-0123456789"
BODY_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

DEEP = 4000
HUGE = [str(2**31), str(2**63), str(10**30), "1e23"]
# Path arguments: text the database cannot store, over-long, huge and negative numbers,
# broken percent-encoding and out-of-range dates. Each is percent-encoded into the path.
PATH_VALUES = [
    "\x00",
    "a\x00b",
    "x" * 10_000,
    "-1",
    "0",
    *HUGE,
    "0001-01-01",
    "\u202e\ufeff",
]
# Raw percent sequences a client can put in a path (invalid UTF-8, an overlong NUL).
RAW_PATH_VALUES = ["%FF%FE", "%C0%80", "%"]
# Query string and form values.
PARAM_VALUES = [
    "\x00",
    "1\x00",
    "x" * 10_000,
    "-1",
    "0",
    *HUGE,
    "-" + str(10**30),
    "1,2," + str(10**30) + ",-1",
    "0001-01-01",
    "9999-12-31",
    "2024-02-30",
    "",
    "\ud7ff\ufffd",
]
# The values each parameter also gets alone.
ONE_AT_A_TIME = ["\x00", "x" * 10_000, "-1", str(2**63), "1e23", "0001-01-01"]
FORM = "application/x-www-form-urlencoded"
# Names many views read, so that each route gets them even when its code is not found.
COMMON_PARAMS = ["next", "q", "ids", "before", "from", "a", "b", "date", "view", "variant"]

_PARAM_USE = re.compile(
    r"""(?:\.(?:args|form|values)\.get(?:list)?|\b\w*(?:int|date|ids|text)\w*)\(\s*["']([A-Za-z_]\w*)["']"""
)
_ARGUMENT = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")


def _json_bodies(view_token: str) -> list[bytes]:
    return [
        b"[" * DEEP,
        b'{"a":' * DEEP,
        b"[" * DEEP + b"]" * DEEP,
        json.dumps({"token": view_token}).encode(),
        json.dumps({"token": 10**30}).encode(),
        json.dumps({"token": ["x"], "id": 2**63}).encode(),
        json.dumps({"token": "\x00"}).encode(),
        b'{"token": "\\ud800"}',
        b"[1e400, -1e400, 123456789012345678901234567890]",
        b'"just a string"',
        b"null",
        json.dumps({"stories": [{"external_id": 10**30, "articles": "x"}], "outlets": {}}).encode(),
        json.dumps(
            {"id": "evt_walker", "type": "customer.subscription.updated", "data": 10**30}
        ).encode(),
        json.dumps(
            {
                "id": "evt_walker_2",
                "type": "checkout.session.completed",
                "created": 10**30,
                "data": {"object": {"id": "\x00", "customer": 2**63, "metadata": []}},
            }
        ).encode(),
    ]


# Bodies sent with a content type that does not describe them, or none.
def _odd_bodies() -> list[tuple[bytes, str | None]]:
    return [
        (b"", "application/json"),
        (b"", "application/x-www-form-urlencoded"),
        (b"", None),
        (b'{"token": "x"}', "text/plain"),
        (b"token=x&csrf_token=y", "application/json"),
        (b"\xff\xfe\x00\x00garbage", "application/x-www-form-urlencoded"),
        (b"\xff\xfe\x00\x00", "application/json"),
        (b"--x\r\n", "multipart/form-data"),
        (
            b"--x\r\nContent-Disposition: form-data\r\n\r\n\x00\r\n--x--",
            "multipart/form-data; boundary=x",
        ),
        (b'{"token": "x"}', "application/json; charset=utf-7"),
    ]


@dataclass
class Visitor:
    name: str
    client: FlaskClient
    csrf: str
    restore: Callable[[], None] = lambda: None


@dataclass
class Walk:
    app: Flask
    valid: dict[str, str]  # path argument -> a value naming a real row
    tokens: dict[str, str]  # endpoint -> a valid token for its <token> argument
    view_token: str
    failures: list[str] = field(default_factory=list)
    requests: int = 0

    def send(
        self,
        visitor: Visitor,
        method: str,
        url: str,
        *,
        body: bytes | None = None,
        content_type: str | None = None,
    ) -> int:
        headers = {"Authorization": f"Bearer {API_TOKEN}", "X-CSRFToken": visitor.csrf}
        if body is not None:
            # A valid Stripe signature over whatever the body is, so the webhook reads it.
            headers["Stripe-Signature"] = stripe.WebhookSignature.generate_signature_header(
                body.decode("latin-1"), SECRET
            )
        kwargs: dict[str, Any] = {"headers": headers}
        if body is not None:
            kwargs["data"] = body
            if content_type is not None:
                kwargs["content_type"] = content_type
        self.requests += 1
        response = visitor.client.open(url, method=method, **kwargs)
        if response.status_code >= 500:
            shown = url if len(url) < 160 else url[:150] + f"…({len(url)})"
            sent = "" if body is None else f" body={body[:60]!r}… ({content_type})"
            self.failures.append(
                f"{visitor.name}: {method} {shown}{sent} -> {response.status_code}"
            )
        response.close()
        return response.status_code

    def form(self, visitor: Visitor, fields: dict[str, str]) -> bytes:
        return urlencode({"csrf_token": visitor.csrf, **fields}).encode()


def _encode(value: str) -> str:
    return quote(value.encode("utf-8", "surrogatepass"), safe="")


def _fill(rule: Rule, values: dict[str, str]) -> str:
    return _ARGUMENT.sub(lambda m: values[m.group(1)], rule.rule)


def _functions_read(func: Any, module: types.ModuleType, depth: int = 2) -> Iterator[Any]:
    """`func` and the functions of its own module that it calls, `depth` levels down."""
    func = inspect.unwrap(func)
    yield func
    if depth == 0:
        return
    codes = [func.__code__]
    names: set[str] = set()
    while codes:
        code = codes.pop()
        names.update(code.co_names)
        codes.extend(c for c in code.co_consts if isinstance(c, types.CodeType))
    for name in names:
        found = getattr(module, name, None)
        if inspect.isfunction(found) and found.__module__ == module.__name__:
            yield from _functions_read(found, module, depth - 1)


def params_read(view: Any) -> list[str]:
    """The request parameters a view's code reads, by name."""
    module = sys.modules[inspect.unwrap(view).__module__]
    names: set[str] = set()
    for func in _functions_read(view, module):
        try:
            names.update(_PARAM_USE.findall(inspect.getsource(func)))
        except (OSError, TypeError):
            continue
    names.discard("csrf_token")
    return sorted(names)


def _path_variants(walk: Walk, rule: Rule) -> Iterator[str]:
    valid = {
        name: walk.tokens.get(rule.endpoint, walk.valid.get(name, "x"))
        if name == "token"
        else walk.valid.get(name, "x")
        for name in rule.arguments
    }
    yield _fill(rule, valid)
    for name, converter in rule._converters.items():
        hostile = [_encode(v) for v in PATH_VALUES] + RAW_PATH_VALUES
        if isinstance(converter, PathConverter):
            hostile += ["..%2F..%2Fetc%2Fpasswd", "a/%00/b"]
        if isinstance(converter, IntegerConverter):
            hostile = [_encode(v) for v in HUGE + ["00000000000000000000000000001", "-1"]]
        for value in hostile:
            yield _fill(rule, {**valid, name: value})


def walk_rule(walk: Walk, visitor: Visitor, rule: Rule, method: str) -> None:
    view = walk.app.view_functions[rule.endpoint]
    has_body = method in BODY_METHODS
    paths = list(_path_variants(walk, rule))
    base = paths[0]
    statuses = []
    for path in paths:
        if has_body:
            statuses.append(
                walk.send(visitor, method, path, body=walk.form(visitor, {}), content_type=FORM)
            )
        else:
            statuses.append(walk.send(visitor, method, path))
    names = params_read(view)
    for value in PARAM_VALUES:
        everything = {name: value for name in sorted({*names, *COMMON_PARAMS})}
        walk.send(visitor, method, f"{base}?{_query(everything)}")
        if has_body:
            walk.send(visitor, method, base, body=walk.form(visitor, everything), content_type=FORM)
    if has_body:
        for body in _json_bodies(walk.view_token):
            walk.send(visitor, method, base, body=body, content_type="application/json")
        for body, content_type in _odd_bodies():
            walk.send(visitor, method, base, body=body, content_type=content_type)
    # One parameter at a time, so that a value refused early does not hide a later one;
    # only where the view answers this visitor at all (not /admin for a reader).
    if statuses[0] == 404:
        return
    for name in names:
        for value in ONE_AT_A_TIME:
            if has_body:
                walk.send(visitor, method, base, body=walk.form(visitor, {name: value}),
                          content_type=FORM)  # fmt: skip
            else:
                walk.send(visitor, method, f"{base}?{_query({name: value})}")


def _query(fields: dict[str, str]) -> str:
    return urlencode(fields, encoding="utf-8", errors="surrogatepass")


def lean_rules(app: Flask) -> list[tuple[str, str, str | None]]:
    """(method, a path of the fast route's rule, its content type) for each lean route,
    with every rule variable filled with a hostile value."""
    out = []
    for route in app.extensions["lean_routes"].routes:
        for rule in app.url_map.iter_rules(route.endpoint):
            for value in [_encode(v) for v in PATH_VALUES] + ["ok-slug"]:
                path = re.sub(r"<[^>]+>", value, rule.rule)
                out += [(method, path, route.mimetype) for method in sorted(route.methods)]
    return out


@pytest.fixture
def app_settings(fake_stripe: FakeStripe) -> dict[str, Any]:  # noqa: F811
    return {
        "STORIES_API_TOKEN": API_TOKEN,
        "STRIPE_SECRET_KEY": "sk_test_fake",
        "STRIPE_API_BASE": fake_stripe.url,
        "STRIPE_PRICE_ID": PRICE_ID,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "RATE_LIMIT_PER_IP": "1000000/3600",
        "RATE_LIMIT_PER_ADDRESS": "1000000/3600",
        # The walker's tracked clicks stay buffered: on SQLite a background write landing
        # between a request's read and its write fails that request (a stale snapshot).
        "CLICK_FLUSH_SECONDS": 60.0,
    }


def _csrf(client: FlaskClient, path: str) -> str:
    page = client.get(path).get_data(as_text=True)
    match = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert match, f"no CSRF token on {path}"
    return match.group(1)


def _signed_in(app: Flask, smtp: SmtpServer, name: str, email: str, *, staff: bool) -> Visitor:
    """A confirmed reader (staff or not), signed in through the real sign-in link."""
    with app.extensions["db"].session() as session:
        reader = Reader(
            email=email, email_key=email, status=ReaderStatus.CONFIRMED, confirmed_at=utcnow(),
            is_staff=staff,
        )  # fmt: skip
        session.add(reader)
    client = app.test_client()
    sign_in(client, smtp, email)

    def restore() -> None:  # the walk signs out and unsubscribes, as a visitor would
        if client.get("/api/me").status_code != 200:
            sign_in(client, smtp, email)
            visitor.csrf = _csrf(client, "/account")

    visitor = Visitor(name, client, _csrf(client, "/account"), restore)
    return visitor


def test_no_route_answers_5xx_to_hostile_input(app: Flask, session, smtp: SmtpServer) -> None:  # type: ignore[no-untyped-def]
    edition = build_edition(app, session)
    session.commit()
    ann = session.scalar(select(Reader).where(Reader.email_key == "ann@example.com"))
    story = edition.stories[0].story
    assert session.get(Edition, edition.id) is not None
    with app.app_context():
        month = f"{edition.date:%Y-%m}"
        view_token = make_compact(
            Purpose.READ_VIEW, ann.id, story.id, edition.id, month_number(month)
        )
        reading = make_compact(Purpose.READING, ann.id, edition.id)
        tokens = {
            "tracking.tracked_link": link_signer().sign(ann.id, edition.id, story.id),
            "readers.unsubscribe": make_token(Purpose.UNSUBSCRIBE, {"r": ann.id}, expires=False),
        }
    walk = Walk(
        app,
        valid={
            "slug": story.slug,
            "edition_id": str(edition.id),
            "reader_id": str(ann.id),
            "name": "confirm",  # publishing the edition template re-renders editions: slow
            "number": "1",
            "plan": "free",
            "filename": "style.css",
        },
        tokens=tokens,
        view_token=view_token,
    )

    anonymous = app.test_client()
    anonymous.set_cookie(READING_COOKIE, reading)
    visitors = [
        Visitor("anonymous", anonymous, _csrf(anonymous, "/signin")),
        _signed_in(app, smtp, "reader", "walker-reader@example.com", staff=False),
        _signed_in(app, smtp, "staff", "walker-staff@example.com", staff=True),
    ]
    visitors[2].client.get("/admin/templates")  # the template versions exist from here on

    rules = [r for r in app.url_map.iter_rules()]
    # Signing out last, so that the rest of the walk keeps its session.
    rules.sort(key=lambda r: r.endpoint == "auth.signout")
    for visitor in visitors:
        for rule in rules:
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                walk_rule(walk, visitor, rule, method)
            visitor.restore()
        for method, path, content_type in lean_rules(app):
            for body in _json_bodies(view_token):
                walk.send(visitor, method, path, body=body, content_type=content_type)

    assert walk.requests > 5000

    assert not walk.failures, f"{len(walk.failures)} of {walk.requests} requests got a 5xx:\n" + (
        "\n".join(dict.fromkeys(walk.failures))
    )


class TestTheReportedFailures:
    """The 500s the walk found, each with the answer it gets now."""

    @pytest.fixture
    def staff(self, app: Flask, smtp: SmtpServer) -> Visitor:
        return _signed_in(app, smtp, "staff", "walker-staff@example.com", staff=True)

    def test_a_nul_in_a_path_or_query_is_a_400_on_both_paths(self, app: Flask, session) -> None:  # type: ignore[no-untyped-def]
        edition = build_edition(app, session, count=1)
        story = edition.stories[0].story
        with app.app_context():
            token = make_compact(Purpose.READ_VIEW, 1, story.id, edition.id, 202501)
            reading = make_compact(Purpose.READING, 1, edition.id)
        client = app.test_client()
        client.set_cookie(READING_COOKIE, reading)
        assert client.get("/stories/%00").status_code == 400
        assert client.get(f"/stories/{story.slug}?x=%00").status_code == 400
        # Answered before Flask when the slug is clean; by Flask's guard when it is not.
        read = client.post(f"/stories/{story.slug}%00/read", json={"token": token})
        assert read.status_code == 400
        assert "NUL" in read.get_data(as_text=True)

    @pytest.mark.parametrize(
        "path",
        [
            "/admin/editions/progress?ids=1,99999999999999999999",
            "/admin/editions/progress?ids=-1",
            "/admin/audit?before=1e23",
            f"/admin/audit?before={10**30}",
            f"/admin/templates/confirm?from={2**63}",
            f"/admin/templates/confirm/diff?b={2**31}",
            f"/admin/templates/confirm/diff?a={10**30}",
        ],
    )
    def test_out_of_range_query_values_are_a_400(self, staff: Visitor, path: str) -> None:
        staff.client.get("/admin/templates")
        response = staff.client.get(path)
        assert response.status_code == 400
        assert "whole number from 0 to 2147483647" in response.get_data(as_text=True)

    @pytest.mark.parametrize(
        "path",
        [
            f"/admin/editions/{2**63}",
            f"/admin/editions/{2**31}/variants/free/preview",
            f"/admin/readers/{10**30}",
            f"/admin/templates/confirm/versions/{2**31}/preview",
        ],
    )
    def test_out_of_range_ids_in_paths_are_a_404(self, staff: Visitor, path: str) -> None:
        assert staff.client.get(path).status_code == 404

    @pytest.mark.parametrize("day", ["0001-01-01", "9999-12-31", "2024-02-30", "2024-W01-1"])
    def test_assembling_a_date_out_of_range_says_so(self, staff: Visitor, day: str) -> None:
        response = staff.client.post(
            "/admin/editions/assemble",
            data={"csrf_token": staff.csrf, "date": day},
            follow_redirects=True,
        )
        assert response.status_code == 200
        assert "YYYY-MM-DD, from 1970-01-01 to 2999-12-31" in response.get_data(as_text=True)
