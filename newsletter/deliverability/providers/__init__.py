"""Parsers of the sending services' bounce and complaint webhooks, one module each.

Each verifies the request the provider's own way and turns its events into
`BounceReport`s; none touches the database. `Unauthentic` means the request is not from
the provider (answer 401/403, store nothing); `Malformed`, that it is signed but not
shaped as the provider documents (answer 400).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


class Unauthentic(Exception):
    """Not from the provider: a bad or missing signature or password."""


class Malformed(Exception):
    """Not an event the provider sends."""


def field(obj: Mapping[str, Any], name: str, *, required: bool = True, size: int = 1000) -> str:
    """A string member of a JSON object, bounded; `Malformed` when it is missing (and
    required) or not a string."""
    value = obj.get(name)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or (required and not value.strip()):
        raise Malformed(f"{name!r} must be a non-empty string")
    if len(value) > size:
        raise Malformed(f"{name!r} is longer than {size} characters")
    return value


def obj(value: Any, name: str) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise Malformed(f"{name!r} must be a JSON object")
    return value


def iso_time(value: Any) -> datetime | None:
    """An ISO 8601 time as providers write it, or None when absent or unreadable (the
    time of a report is context, never a reason to refuse it)."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    text = value.strip().replace("Z", "+00:00")
    try:
        found = datetime.fromisoformat(text)
    except ValueError:
        return None
    return found.replace(tzinfo=UTC) if found.tzinfo is None else found.astimezone(UTC)


def epoch_time(value: Any) -> datetime | None:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        seconds = float(value)
        return datetime.fromtimestamp(seconds, UTC) if 0 < seconds < 1e11 else None
    except (ValueError, OverflowError):
        return None
