"""reads: a slot per metered read (lock-free meter); a deleted story's reads stay counted

Revision ID: 0008
Revises: 0006
Create Date: 2026-11-25 16:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("reads", schema=None) as batch_op:
        batch_op.add_column(sa.Column("slot", sa.Integer(), nullable=True))
        batch_op.alter_column("story_id", existing_type=sa.Integer(), nullable=True)
        batch_op.drop_constraint("fk_reads_story_id_stories", type_="foreignkey")
        batch_op.create_foreign_key(
            batch_op.f("fk_reads_story_id_stories"),
            "stories",
            ["story_id"],
            ["id"],
            ondelete="SET NULL",
        )
    # Metered reads already there take slots in the order they were read.
    op.execute(
        """
        UPDATE reads SET slot = (
            SELECT count(*) FROM reads AS earlier
            WHERE earlier.reader_id = reads.reader_id AND earlier.month = reads.month
              AND earlier.metered AND (earlier.at < reads.at
                                       OR (earlier.at = reads.at AND earlier.id <= reads.id))
        )
        WHERE metered
        """
    )
    with op.batch_alter_table("reads", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            batch_op.f("uq_reads_reader_id_month_slot"), ["reader_id", "month", "slot"]
        )


def downgrade() -> None:
    with op.batch_alter_table("reads", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("uq_reads_reader_id_month_slot"), type_="unique")
        batch_op.drop_constraint("fk_reads_story_id_stories", type_="foreignkey")
        batch_op.create_foreign_key(
            batch_op.f("fk_reads_story_id_stories"),
            "stories",
            ["story_id"],
            ["id"],
            ondelete="CASCADE",
        )
    op.execute("DELETE FROM reads WHERE story_id IS NULL")
    with op.batch_alter_table("reads", schema=None) as batch_op:
        batch_op.alter_column("story_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("slot")
