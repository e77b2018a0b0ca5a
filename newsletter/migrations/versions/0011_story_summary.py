"""story summary (the short text the edition email shows)

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02 12:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("stories", sa.Column("summary", sa.Text(), nullable=True))


def downgrade() -> None:
    # Plain DROP COLUMN (SQLite 3.35+): a batch copy would remake `stories` and cascade.
    op.execute("ALTER TABLE stories DROP COLUMN summary")
