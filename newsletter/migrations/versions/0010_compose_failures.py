"""compose failures (an edition that cannot be composed is reported)

Editions get `compose_error` and `compose_error_at`. Variants keep their holes beside the
text (`html_holes`, `text_holes`: `[[offset, name], ...]`) instead of as `@@name@@` markers
in it. Stored variants are converted: only the markers the renderer wrote (the edition's
own story links and the per-reader counts and unsubscribe link) become holes, so any
other marker-shaped text in them stays text.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02 06:40:00
"""

import json
import re
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

import newsletter.db

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_MARKER = re.compile(r"@@([a-z][a-z0-9_:-]*)@@")
_BODY_HOLES = {"free_left", "trial_days_left", "unsubscribe_url"}


def _take(text: str, known: set[str]) -> tuple[str, list[list[Any]]]:
    out: list[str] = []
    holes: list[list[Any]] = []
    size = at = 0
    for match in _MARKER.finditer(text):
        if match.group(1) not in known:
            continue
        out.append(text[at : match.start()])
        size += match.start() - at
        holes.append([size, match.group(1)])
        at = match.end()
    out.append(text[at:])
    return "".join(out), holes


def _put(text: str, holes: list[list[Any]]) -> str:
    out, at = [], 0
    for offset, name in holes:
        out += [text[at:offset], f"@@{name}@@"]
        at = offset
    out.append(text[at:])
    return "".join(out)


def upgrade() -> None:
    with op.batch_alter_table("editions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("compose_error", sa.Text(), nullable=True))
        batch_op.add_column(
            sa.Column("compose_error_at", newsletter.db.UTCDateTime(timezone=True), nullable=True)
        )
    with op.batch_alter_table("edition_variants", schema=None) as batch_op:
        batch_op.add_column(sa.Column("html_holes", sa.JSON(), server_default="[]", nullable=False))
        batch_op.add_column(sa.Column("text_holes", sa.JSON(), server_default="[]", nullable=False))

    conn = op.get_bind()
    stories: dict[int, set[str]] = {}
    for edition_id, story_id in conn.execute(
        sa.text("SELECT edition_id, story_id FROM edition_stories")
    ):
        stories.setdefault(edition_id, set()).add(f"link_{story_id}")
    rows = conn.execute(sa.text("SELECT id, edition_id, html, text FROM edition_variants"))
    for variant_id, edition_id, html, text in rows.fetchall():
        known = _BODY_HOLES | stories.get(edition_id, set())
        html, html_holes = _take(html, known)
        text, text_holes = _take(text, known)
        conn.execute(
            sa.text(
                "UPDATE edition_variants SET html = :html, text = :text, "
                "html_holes = :html_holes, text_holes = :text_holes WHERE id = :id"
            ),
            {
                "id": variant_id,
                "html": html,
                "text": text,
                "html_holes": json.dumps(html_holes),
                "text_holes": json.dumps(text_holes),
            },
        )


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT id, html, text, html_holes, text_holes FROM edition_variants")
    )
    for variant_id, html, text, html_holes, text_holes in rows.fetchall():
        html_holes = json.loads(html_holes) if isinstance(html_holes, str) else html_holes
        text_holes = json.loads(text_holes) if isinstance(text_holes, str) else text_holes
        conn.execute(
            sa.text("UPDATE edition_variants SET html = :html, text = :text WHERE id = :id"),
            {"id": variant_id, "html": _put(html, html_holes), "text": _put(text, text_holes)},
        )
    # Plain DROP COLUMN (SQLite 3.35+), not a batch copy: on SQLite a batch would drop and
    # remake `editions`, and its ON DELETE CASCADE would take the variants and ledger along.
    for table, column in (
        ("edition_variants", "text_holes"),
        ("edition_variants", "html_holes"),
        ("editions", "compose_error_at"),
        ("editions", "compose_error"),
    ):
        op.execute(f"ALTER TABLE {table} DROP COLUMN {column}")
