"""deliverability: received bounce and complaint reports; editions that pause by themselves

Revision ID: 0012
Revises: 0010
Create Date: 2026-12-02 12:45:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import newsletter.db

revision: str = "0012"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "received_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("event_id", sa.String(length=255), nullable=False),
        sa.Column(
            "kind",
            sa.Enum(
                "hard_bounce",
                "soft_bounce",
                "complaint",
                name="reportkind",
                native_enum=False,
                create_constraint=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("recipient", sa.String(length=254), nullable=False),
        sa.Column("recipient_domain", sa.String(length=254), nullable=False),
        sa.Column("diagnostic", sa.String(length=1000), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=True),
        sa.Column("raw_ref", sa.String(length=500), nullable=True),
        sa.Column("reader_id", sa.Integer(), nullable=True),
        sa.Column("delivery_id", sa.Integer(), nullable=True),
        sa.Column("edition_id", sa.Integer(), nullable=True),
        sa.Column("suppressed", sa.Boolean(), nullable=False),
        sa.Column("occurred_at", newsletter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("received_at", newsletter.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["delivery_id"],
            ["deliveries.id"],
            name=op.f("fk_received_reports_delivery_id_deliveries"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["edition_id"],
            ["editions.id"],
            name=op.f("fk_received_reports_edition_id_editions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["reader_id"],
            ["readers.id"],
            name=op.f("fk_received_reports_reader_id_readers"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_received_reports")),
        sa.UniqueConstraint("source", "event_id", name=op.f("uq_received_reports_source_event_id")),
    )
    with op.batch_alter_table("received_reports", schema=None) as batch_op:
        batch_op.create_index(
            "ix_received_reports_edition_id_kind", ["edition_id", "kind"], unique=False
        )
        batch_op.create_index(
            "ix_received_reports_reader_id_kind", ["reader_id", "kind"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_received_reports_reader_id"), ["reader_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_received_reports_received_at"), ["received_at"], unique=False
        )
    op.create_table(
        "webhook_tokens",
        sa.Column("source", sa.String(length=20), nullable=False),
        sa.Column("token", sa.String(length=200), nullable=False),
        sa.Column("received_at", newsletter.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("source", "token", name=op.f("pk_webhook_tokens")),
    )
    with op.batch_alter_table("webhook_tokens", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_webhook_tokens_received_at"), ["received_at"], unique=False
        )
    # Plain ADD COLUMN, not a batch copy: on SQLite a batch would drop and remake
    # `editions`, and its ON DELETE CASCADE would take the variants and ledger along.
    op.add_column("editions", sa.Column("auto_paused_reason", sa.Text(), nullable=True))
    op.add_column(
        "editions",
        sa.Column("auto_paused_at", newsletter.db.UTCDateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.execute("ALTER TABLE editions DROP COLUMN auto_paused_at")
    op.execute("ALTER TABLE editions DROP COLUMN auto_paused_reason")
    op.drop_table("webhook_tokens")
    op.drop_table("received_reports")
