"""Moving readers out: every reader as CSV, streamed a chunk at a time.

Cells are made safe for spreadsheets (CSV injection): a cell starting with = + - @, a
tab or a carriage return is prefixed with an apostrophe, so Excel or LibreOffice shows
it as text instead of running it as a formula.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.billing.entitlement import plans_of
from newsletter.db import utcnow
from newsletter.readers.models import Reader

CHUNK = 1000
COLUMNS = [
    "email",
    "status",
    "plan",
    "delivery_hour",
    "timezone",
    "consent_at",
    "consent_source",
    "suppression",
    "suppression_reason",
    "created_at",
]
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def safe_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    text = getattr(value, "value", value)
    text = str(text)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def _line(cells: list[Any]) -> str:
    out = io.StringIO()
    csv.writer(out).writerow([safe_cell(c) for c in cells])
    return out.getvalue()


def export_csv(session: Session, *, now: datetime | None = None) -> Iterator[str]:
    """The CSV, header first, then one string per chunk of readers in id order (erased
    readers are left out: nothing of them is personal any more)."""
    now = now or utcnow()
    yield _line(COLUMNS)
    after = 0
    while True:
        rows = session.execute(
            select(
                Reader.id,
                Reader.email,
                Reader.status,
                Reader.delivery_hour,
                Reader.timezone,
                Reader.consent_at,
                Reader.consent_source,
                Reader.suppression,
                Reader.suppressed_reason,
                Reader.created_at,
            )
            .where(Reader.id > after, Reader.erased_at.is_(None))
            .order_by(Reader.id)
            .limit(CHUNK)
        ).all()
        if not rows:
            return
        plans = plans_of(session, [r.id for r in rows], now)
        out = io.StringIO()
        writer = csv.writer(out)
        for r in rows:
            cells = [
                r.email,
                r.status,
                plans[r.id],
                r.delivery_hour,
                r.timezone,
                r.consent_at,
                r.consent_source,
                r.suppression,
                r.suppressed_reason,
                r.created_at,
            ]
            writer.writerow([safe_cell(c) for c in cells])
        after = rows[-1].id
        yield out.getvalue()
