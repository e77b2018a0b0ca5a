"""One run of a scheduled job at a time, across worker processes and machines.

`job_lock(db, name)` is a context manager yielding True when this process may run the
job now, False when another one is running it (the caller skips this run):

- PostgreSQL: `pg_try_advisory_xact_lock` in a transaction held open while the job runs.
  The server releases it when that transaction ends, including when the process dies.
- SQLite: a row in `job_locks` taken by one atomic upsert that only
  succeeds when the row is absent or expired. A process that dies holding it blocks the
  job until `ttl` passes, so `ttl` must exceed the job's longest run.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta

from sqlalchemy import String, delete
from sqlalchemy.orm import Mapped, mapped_column

from newsletter.db import Base, Database, table_of, upsert, utcnow
from newsletter.db import advisory_key as _advisory_key
from newsletter.db.dialect import TRY_ADVISORY_XACT_LOCK


class JobLock(Base):
    __tablename__ = "job_locks"

    name: Mapped[str] = mapped_column(String(100), primary_key=True)
    owner: Mapped[str] = mapped_column(String(100))
    expires_at: Mapped[datetime]


def process_id() -> str:
    """hostname:pid:random, so two machines (or a restarted pid) never look alike."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(4)}"


def advisory_key(name: str) -> int:
    """The PostgreSQL advisory-lock key of job `name`."""
    return _advisory_key("job", name)


@contextmanager
def job_lock(db: Database, name: str, *, ttl: float = 900) -> Iterator[bool]:
    if db.is_postgres:
        with db.engine.connect() as conn, conn.begin():
            acquired = conn.scalar(TRY_ADVISORY_XACT_LOCK, {"key": advisory_key(name)})
            yield bool(acquired)
        return

    owner = process_id()
    now = utcnow()
    table = table_of(JobLock)
    stmt = upsert(table, db.engine).values(
        name=name, owner=owner, expires_at=now + timedelta(seconds=ttl)
    )
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c.name],
        set_={"owner": stmt.excluded.owner, "expires_at": stmt.excluded.expires_at},
        where=table.c.expires_at < now,
    )
    with db.engine.begin() as conn:
        acquired = conn.execute(stmt.execution_options(preserve_rowcount=True)).rowcount == 1
    try:
        yield acquired
    finally:
        if acquired:
            with db.engine.begin() as conn:
                conn.execute(delete(table).where(table.c.name == name, table.c.owner == owner))
