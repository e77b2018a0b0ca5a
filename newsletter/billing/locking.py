"""Serializing billing work on one Stripe object."""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import Session

from newsletter.billing.models import BillingSubscription
from newsletter.db import advisory_key, is_postgres, table_of
from newsletter.db.dialect import ADVISORY_XACT_LOCK

# SQLite has no row locks: a write that changes nothing takes its one write lock.
_TAKE_WRITE_LOCK = (
    update(table_of(BillingSubscription))
    .where(table_of(BillingSubscription).c.id < 0)
    .values(status="")
)


def lock(session: Session, name: str) -> None:
    """Serialize work on one Stripe object until this transaction ends.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: its one write lock. Call it
    first in a transaction: on SQLite a transaction that has read cannot take the write
    lock once another writer has committed."""
    connection = session.connection()
    if is_postgres(connection):
        connection.execute(ADVISORY_XACT_LOCK, {"key": advisory_key("billing", name)})
    else:
        connection.execute(_TAKE_WRITE_LOCK)
