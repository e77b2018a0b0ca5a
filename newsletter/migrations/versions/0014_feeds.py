"""feeds (outlets' RSS/Atom feeds, their health and fetch runs; who rated an outlet)

Outlets get `rating_source` and `rating_set_by`; the ratings they already have came from
stories imports, which are editorial, so they are marked as set by staff.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-02 13:10:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import newsletter.db

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "feeds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("outlet_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False),
        sa.Column("etag", sa.String(length=500), nullable=True),
        sa.Column("last_modified", sa.String(length=500), nullable=True),
        sa.Column("next_fetch_at", newsletter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("consecutive_errors", sa.Integer(), nullable=False),
        sa.Column("last_fetch_at", newsletter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_success_at", newsletter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("last_error", sa.String(length=500), nullable=True),
        sa.Column("last_error_at", newsletter.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("items_seen", sa.Integer(), nullable=False),
        sa.Column("created_at", newsletter.db.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["outlet_id"],
            ["outlets.id"],
            name=op.f("fk_feeds_outlet_id_outlets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feeds")),
        sa.UniqueConstraint("url", name=op.f("uq_feeds_url")),
    )
    op.create_index(op.f("ix_feeds_outlet_id"), "feeds", ["outlet_id"], unique=False)
    op.create_index(op.f("ix_feeds_next_fetch_at"), "feeds", ["next_fetch_at"], unique=False)
    op.create_table(
        "feed_runs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("feed_id", sa.Integer(), nullable=False),
        sa.Column("started_at", newsletter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column(
            "outcome",
            sa.Enum("ok", "not_modified", "error", name="runoutcome", native_enum=False, length=20),
            nullable=False,
        ),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("bytes_read", sa.Integer(), nullable=False),
        sa.Column("fetched", sa.Integer(), nullable=False),
        sa.Column("new", sa.Integer(), nullable=False),
        sa.Column("duplicate", sa.Integer(), nullable=False),
        sa.Column("clustered", sa.Integer(), nullable=False),
        sa.Column("new_stories", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["feed_id"], ["feeds.id"], name=op.f("fk_feed_runs_feed_id_feeds"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_feed_runs")),
    )
    op.create_index(
        "ix_feed_runs_feed_id_started_at", "feed_runs", ["feed_id", "started_at"], unique=False
    )
    with op.batch_alter_table("outlets", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "rating_source",
                sa.Enum("staff", "ratings_file", name="ratingsource", native_enum=False, length=20),
                nullable=True,
            )
        )
        batch_op.add_column(sa.Column("rating_set_by", sa.String(length=254), nullable=True))
    op.execute(
        "UPDATE outlets SET rating_source = 'staff', rating_set_by = 'stories import' "
        "WHERE bias <> 'unrated' OR factuality <> 'unrated'"
    )


def downgrade() -> None:
    with op.batch_alter_table("outlets", schema=None) as batch_op:
        batch_op.drop_column("rating_set_by")
        batch_op.drop_column("rating_source")
    op.drop_index("ix_feed_runs_feed_id_started_at", table_name="feed_runs")
    op.drop_table("feed_runs")
    op.drop_index(op.f("ix_feeds_next_fetch_at"), table_name="feeds")
    op.drop_index(op.f("ix_feeds_outlet_id"), table_name="feeds")
    op.drop_table("feeds")
