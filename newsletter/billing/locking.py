"""Serializing billing work on one Stripe object, and the dialect's upsert."""

from __future__ import annotations

import hashlib
from typing import Any

from sqlalchemy import text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from newsletter.billing.models import BillingSubscription
from newsletter.db import table_of

INSERTS: dict[str, Any] = {"postgresql": pg_insert, "sqlite": sqlite_insert}


def insert_for(session: Session) -> Any:
    return INSERTS[session.get_bind().dialect.name]


def _advisory_key(name: str) -> int:
    return int.from_bytes(
        hashlib.sha256(b"bsd-billing:" + name.encode()).digest()[:8], "big", signed=True
    )


_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:k)")
_TAKE_WRITE_LOCK = (
    update(table_of(BillingSubscription))
    .where(table_of(BillingSubscription).c.id < 0)
    .values(status="")
)


def lock(session: Session, name: str) -> None:
    """Serialize work on one Stripe object until this transaction ends.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: its one write lock, taken by a
    write that changes nothing (SQLite has no row locks). Call it first in a transaction:
    on SQLite a transaction that has read cannot take the write lock once another writer
    has committed."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(_ADVISORY_LOCK, {"k": _advisory_key(name)})
    else:
        connection.execute(_TAKE_WRITE_LOCK)
