"""sessions and suppression (sign-out revokes sessions; staff idle expiry)

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02 06:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("readers", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("session_version", sa.Integer(), server_default="0", nullable=False)
        )
        batch_op.add_column(sa.Column("suppression", sa.String(length=20), nullable=True))
    # Readers suppressed before there was a reason column: staff suppressions say so in
    # their note; every other bounced reader was refused by a mail server.
    op.execute(
        "UPDATE readers SET suppression = 'staff' "
        "WHERE status = 'bounced' AND suppressed_reason LIKE 'suppressed by %'"
    )
    op.execute(
        "UPDATE readers SET suppression = 'bounced' "
        "WHERE status = 'bounced' AND suppression IS NULL"
    )


def downgrade() -> None:
    with op.batch_alter_table("readers", schema=None) as batch_op:
        batch_op.drop_column("suppression")
        batch_op.drop_column("session_version")
