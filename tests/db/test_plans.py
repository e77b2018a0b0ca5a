"""In a transaction that grows a table (an import, an enqueue), a statement run again
and again is planned for the table as it is now (`db.plan_each_run`).

psycopg prepares a statement after a few runs, and PostgreSQL may then keep one generic
plan made for the table as it was. A batch lookup prepared while the readers table was
nearly empty went on scanning the whole table once an import had filled it (the 100,000
row import took 63 s instead of 15 s). This is PostgreSQL's plan cache: SQLite plans each
statement against its schema and uses the address index whatever the table's size.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import insert, select, text
from sqlalchemy.orm import Session

from newsletter.db import Database, plan_each_run, table_of, utcnow
from newsletter.readers.models import Reader, ReaderStatus
from tests.conftest import make_app
from tests.smtp_server import SmtpServer

ROWS = 20_000
BATCH = 50


@pytest.fixture
def pg_db(pg_url: str, tmp_path: Path, smtp: SmtpServer) -> Database:
    app = make_app(pg_url, tmp_path, smtp)
    return app.extensions["db"]  # type: ignore[no-any-return]


def _rows_scanned(session: Session) -> int:
    # This transaction's own counters: rows read by sequential scans of `readers`.
    return (
        session.scalar(
            text("SELECT seq_tup_read FROM pg_stat_xact_user_tables WHERE relname = 'readers'")
        )
        or 0
    )


def _lookup(session: Session, first: int) -> list[str]:
    keys = [f"reader{n}@example.com" for n in range(first, first + BATCH)]
    return list(session.scalars(select(Reader.email_key).where(Reader.email_key.in_(keys))))


def test_a_batch_lookup_repeated_while_the_table_grows_stays_on_the_index(
    pg_db: Database,
) -> None:
    with pg_db.session() as session:
        plan_each_run(session)
        # Past psycopg's prepare threshold and the server's five custom plans, while empty.
        for _ in range(12):
            assert _lookup(session, 0) == []
        session.execute(
            insert(table_of(Reader)),
            [
                {
                    "email": f"reader{n}@example.com",
                    "email_key": f"reader{n}@example.com",
                    "status": ReaderStatus.CONFIRMED,
                    "timezone": "UTC",
                    "delivery_hour": 6,
                    "created_at": utcnow(),
                }
                for n in range(ROWS)
            ],
        )
        before = _rows_scanned(session)
        for batch in range(5):
            assert len(_lookup(session, batch * BATCH)) == BATCH
        # A plan made for 20,000 rows looks 50 addresses up in the index and reads no row
        # by a sequential scan; the plan made for the empty table read all 20,000 each time.
        assert _rows_scanned(session) - before < ROWS
        session.rollback()
