"""readers moved in and out, and erased on request

Readers get `consent_source` and `consent_at` (where and when their consent was given:
signup here or another platform's export), `invite_queued_at` (imported readers waiting
for their opt-in email), `erased_at`, and an index for the worker's due-readers query.
`erased_addresses` keeps a keyed hash of every address erased at its owner's request, so
an import cannot bring it back.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-02 12:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import newsletter.db

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_DATETIME = newsletter.db.UTCDateTime(timezone=True)


def upgrade() -> None:
    # Plain ADD COLUMN, not a batch copy: on SQLite a batch would remake `readers`, and
    # its ON DELETE CASCADE would take every reader's rows along.
    op.add_column("readers", sa.Column("consent_source", sa.String(length=300), nullable=True))
    op.add_column("readers", sa.Column("consent_at", _DATETIME, nullable=True))
    op.add_column("readers", sa.Column("invite_queued_at", _DATETIME, nullable=True))
    op.add_column("readers", sa.Column("erased_at", _DATETIME, nullable=True))
    op.create_index(op.f("ix_readers_invite_queued_at"), "readers", ["invite_queued_at"])
    op.create_index(
        "ix_readers_status_timezone_hour", "readers", ["status", "timezone", "delivery_hour"]
    )
    # Readers who confirmed here before this column existed: their consent is the signup.
    op.execute(
        "UPDATE readers SET consent_source = 'signup', consent_at = confirmed_at "
        "WHERE confirmed_at IS NOT NULL"
    )
    op.create_table(
        "erased_addresses",
        sa.Column("address_hash", sa.String(length=64), nullable=False),
        sa.Column("erased_at", _DATETIME, nullable=False),
        sa.PrimaryKeyConstraint("address_hash", name=op.f("pk_erased_addresses")),
    )


def downgrade() -> None:
    op.drop_table("erased_addresses")
    op.drop_index("ix_readers_status_timezone_hour", table_name="readers")
    op.drop_index(op.f("ix_readers_invite_queued_at"), table_name="readers")
    for column in ("erased_at", "invite_queued_at", "consent_at", "consent_source"):
        op.execute(f"ALTER TABLE readers DROP COLUMN {column}")
