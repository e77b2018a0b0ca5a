"""stories, outlets, articles (coverage is derived from articles, not stored)

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 13:12:37.443634
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import newsletter.db

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "outlets",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("slug", sa.String(length=80), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=True),
        sa.Column(
            "bias",
            sa.Enum(
                "far_left",
                "left",
                "lean_left",
                "center",
                "lean_right",
                "right",
                "far_right",
                "unrated",
                name="bias",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column(
            "factuality",
            sa.Enum(
                "very_high",
                "high",
                "mostly_factual",
                "mixed",
                "low",
                "very_low",
                "unrated",
                name="factuality",
                native_enum=False,
                length=20,
            ),
            nullable=False,
        ),
        sa.Column("created_at", newsletter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", newsletter.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outlets")),
        sa.UniqueConstraint("slug", name=op.f("uq_outlets_slug")),
    )
    op.create_table(
        "stories",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("external_id", sa.String(length=200), nullable=False),
        sa.Column("slug", sa.String(length=80), nullable=False),
        sa.Column("title", sa.String(length=300), nullable=False),
        sa.Column("overview", sa.Text(), nullable=False),
        sa.Column("analysis_left", sa.Text(), nullable=True),
        sa.Column("analysis_center", sa.Text(), nullable=True),
        sa.Column("analysis_right", sa.Text(), nullable=True),
        sa.Column("faq", sa.JSON(), nullable=False),
        sa.Column("topics", sa.JSON(), nullable=False),
        sa.Column("published_at", newsletter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("created_at", newsletter.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", newsletter.db.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_stories")),
        sa.UniqueConstraint("external_id", name=op.f("uq_stories_external_id")),
        sa.UniqueConstraint("slug", name=op.f("uq_stories_slug")),
    )
    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_stories_published_at"), ["published_at"], unique=False)

    op.create_table(
        "articles",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("story_id", sa.Integer(), nullable=False),
        sa.Column("outlet_id", sa.Integer(), nullable=False),
        sa.Column("url", sa.String(length=2000), nullable=False),
        sa.Column("headline", sa.String(length=500), nullable=False),
        sa.Column("published_at", newsletter.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["outlet_id"],
            ["outlets.id"],
            name=op.f("fk_articles_outlet_id_outlets"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["story_id"],
            ["stories.id"],
            name=op.f("fk_articles_story_id_stories"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_articles")),
        sa.UniqueConstraint("story_id", "url", name=op.f("uq_articles_story_id_url")),
    )
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_articles_outlet_id"), ["outlet_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("articles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_articles_outlet_id"))

    op.drop_table("articles")
    with op.batch_alter_table("stories", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_stories_published_at"))

    op.drop_table("stories")
    op.drop_table("outlets")
