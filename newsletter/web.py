"""Helpers shared by the views: request origin, safe redirects, rate limits, bounded
request parameters."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, request
from werkzeug.datastructures import MultiDict

from newsletter.config import parse_rate
from newsletter.db import get_db
from newsletter.errors import InvalidInput
from newsletter.inputs import parse_id, storable
from newsletter.ratelimit import hit
from newsletter.readers.services import RequestInfo


def request_info() -> RequestInfo:
    return RequestInfo(ip=request.remote_addr, user_agent=request.headers.get("User-Agent"))


def safe_next(target: str | None, default: str = "/account") -> str:
    """Only same-site absolute paths: no scheme, no host, no `//evil` or `/\\evil`."""
    if not target:
        return default
    parts = urlsplit(target)
    if (
        parts.scheme
        or parts.netloc
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 for c in target)
    ):
        return default
    return target


def limit(scope: str, address: str | None) -> None:
    """Apply the per-IP and (when known) per-address limits for `scope`."""
    cfg = current_app.config
    engine = get_db().engine
    count, seconds = parse_rate(cfg["RATE_LIMIT_PER_IP"])
    hit(engine, f"{scope}:ip", request.remote_addr or "unknown", count, seconds)
    if address:
        count, seconds = parse_rate(cfg["RATE_LIMIT_PER_ADDRESS"])
        hit(engine, f"{scope}:addr", address.lower(), count, seconds)


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
UNSTORABLE = "The address or the form holds something that cannot be used, such as a NUL byte."


def refuse_unstorable() -> None:
    """`before_request`, before every view and check: a path, query string or form value
    holding text the database cannot store is a 400 before it can reach a query."""
    values = [request.path, *_texts(request.args)]
    if request.mimetype in _FORM_TYPES:
        values += _texts(request.form)
    if not all(isinstance(value, str) and storable(value) for value in values):
        raise InvalidInput(UNSTORABLE)


def _texts(values: MultiDict[str, str]) -> list[str | None]:
    # A multipart part without a name has the key None: refused as well.
    return [text for pair in values.items(multi=True) for text in pair]


def id_param(values: MultiDict[str, str], name: str) -> int | None:
    """`request.args` or `request.form`'s `name` as an id the database can hold, None
    when absent or empty; anything else is a 400."""
    raw = values.get(name)
    if raw is None or not raw.strip():
        return None
    return parse_id(raw, f'"{name}"')


def id_list_param(values: MultiDict[str, str], name: str, limit: int) -> list[int]:
    """A comma-separated list of ids (`?ids=1,2`): the first `limit`; a bad one is a 400."""
    parts = [part for part in values.get(name, "").split(",") if part.strip()][:limit]
    return [parse_id(part, f'Each of "{name}"') for part in parts]
