"""story clustering (articles from feeds, stories in review)

Articles get `lede`, `canonical_url` (unique), `feed_id` + `guid` (unique together),
`first_seen_at` and a MinHash `fingerprint`; stories get a review `status` (existing
stories were imported, so they are published) and `edited_at`.

Revision ID: 0014
Revises: 0010
Create Date: 2026-12-02 12:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import newsletter.db

revision: str = "0014"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.add_column(sa.Column("lede", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("canonical_url", sa.String(length=2000), nullable=True))
        batch_op.add_column(sa.Column("feed_id", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("guid", sa.String(length=500), nullable=True))
        batch_op.add_column(
            sa.Column(
                "first_seen_at",
                newsletter.db.UTCDateTime(timezone=True),
                server_default=sa.func.now(),
                nullable=False,
            )
        )
        batch_op.add_column(sa.Column("fingerprint", sa.LargeBinary(), nullable=True))
        batch_op.create_unique_constraint(
            batch_op.f("uq_articles_canonical_url"), ["canonical_url"]
        )
        batch_op.create_unique_constraint(
            batch_op.f("uq_articles_feed_id_guid"), ["feed_id", "guid"]
        )
        batch_op.create_index("ix_articles_published_at", ["published_at"], unique=False)
    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "status",
                sa.Enum(
                    "candidate",
                    "published",
                    "hidden",
                    name="storystatus",
                    native_enum=False,
                    length=20,
                ),
                server_default="published",
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column("edited_at", newsletter.db.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.drop_column("edited_at")
        batch_op.drop_column("status")
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.drop_index("ix_articles_published_at")
        batch_op.drop_constraint(batch_op.f("uq_articles_feed_id_guid"), type_="unique")
        batch_op.drop_constraint(batch_op.f("uq_articles_canonical_url"), type_="unique")
        batch_op.drop_column("fingerprint")
        batch_op.drop_column("first_seen_at")
        batch_op.drop_column("guid")
        batch_op.drop_column("feed_id")
        batch_op.drop_column("canonical_url")
        batch_op.drop_column("lede")
