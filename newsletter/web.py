"""Helpers shared by the views: request origin, safe redirects, rate limits."""

from __future__ import annotations

from urllib.parse import urlsplit

from flask import current_app, request

from newsletter.config import parse_rate
from newsletter.db import get_db
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
