""" "Download my data": everything held about a reader, as one JSON document.

The tables are found by walking the schema, not listed by hand: every table with a
foreign key to `readers.id` contributes the rows that point at the reader, with every
column. So a table added later is in the download without anyone remembering it.
"""

from __future__ import annotations

import base64
from datetime import date, datetime
from enum import Enum
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

import newsletter.models  # noqa: F401  (every table registered, so the walk finds them all)
from newsletter.billing.entitlement import billing_status
from newsletter.db import Base, utcnow
from newsletter.readers.models import Reader


def _plain(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return value


def reader_links() -> list[tuple[Table, str]]:
    """Every (table, column) that refers to a reader, in a stable order."""
    links = []
    for table in Base.metadata.sorted_tables:
        for fk in sorted(table.foreign_keys, key=lambda fk: fk.parent.name):
            if fk.column.table.name == "readers" and fk.column.name == "id":
                links.append((table, fk.parent.name))
    return links


def reader_data(session: Session, reader: Reader, now: datetime | None = None) -> dict[str, Any]:
    readers = Reader.__table__
    profile = session.execute(select(readers).where(readers.c.id == reader.id)).mappings().one()
    tables: dict[str, list[dict[str, Any]]] = {}
    for table, column in reader_links():
        rows = session.execute(
            select(table).where(table.c[column] == reader.id).order_by(*table.primary_key.columns)
        ).mappings()
        name = table.name if column == "reader_id" else f"{table.name} ({column})"
        tables[name] = [{k: _plain(v) for k, v in row.items()} for row in rows]
    status = billing_status(session, reader, now)
    return {
        "exported_at": (now or utcnow()).isoformat(),
        "profile": {k: _plain(v) for k, v in profile.items()},
        "billing": {
            "plan": status.plan.value,
            "trial_ends_at": _plain(status.trial_ends_at),
            "renews_at": _plain(status.renews_at),
            "cancels_at": _plain(status.cancels_at),
            "past_due": status.past_due,
        },
        "tables": tables,
    }
