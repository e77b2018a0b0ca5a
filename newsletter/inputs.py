"""Bounds on values that come from outside: what the database and the calendar can hold.

Every entrypoint checks its input here, at the boundary, so that an out-of-range value
is a clear 400 (or a 404 for an id in a path) instead of an error from the database
driver or from date arithmetic deep in a service.
"""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from werkzeug.routing import IntegerConverter, Map, ValidationError

from newsletter.errors import InvalidInput

# Every id and number column is an INTEGER: 32 bits signed on PostgreSQL.
DB_INT_MAX = 2**31 - 1
# Editions and reports are about the present; the margin keeps arithmetic on a date
# (an edition's window, a month's start) inside what `datetime` can represent.
DATE_MIN = date(1970, 1, 1)
DATE_MAX = date(2999, 12, 31)

_DIGITS = re.compile(r"[0-9]{1,10}")
_DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")


def storable(text: str) -> bool:
    """Whether a database text column can hold `text`: PostgreSQL refuses NUL, and no
    driver can encode a lone surrogate."""
    return "\x00" not in text and not any("\ud800" <= ch <= "\udfff" for ch in text)


def parse_id(raw: str, what: str = "The id") -> int:
    """A non-negative integer the database's integer columns can hold (ASCII digits
    only), or `InvalidInput`."""
    value = raw.strip()
    if not _DIGITS.fullmatch(value) or int(value) > DB_INT_MAX:
        raise InvalidInput(f"{what} must be a whole number from 0 to {DB_INT_MAX}.")
    return int(value)


def parse_day(raw: str, what: str = "The date") -> date:
    """A date written YYYY-MM-DD between `DATE_MIN` and `DATE_MAX`, or `InvalidInput`."""
    value = raw.strip()
    try:
        day = date.fromisoformat(value) if _DAY.fullmatch(value) else None
    except ValueError:  # 2024-02-30
        day = None
    if day is None or not DATE_MIN <= day <= DATE_MAX:
        raise InvalidInput(
            f"{what} must be a date written YYYY-MM-DD, from {DATE_MIN} to {DATE_MAX}."
        )
    return day


class IdConverter(IntegerConverter):
    """werkzeug's `int` converter, bounded to the database's integer range: a path with a
    larger number matches no route (404), as an id with no row does."""

    def __init__(self, map: Map, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("max", DB_INT_MAX)
        super().__init__(map, *args, **kwargs)

    def to_python(self, value: str) -> int:
        # `\d` also matches other scripts' digits; ids are ASCII.
        if not value.isascii():
            raise ValidationError()
        return super().to_python(value)  # type: ignore[no-any-return]
