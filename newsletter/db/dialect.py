"""Every choice that differs between PostgreSQL and SQLite, in one module.

Code elsewhere asks here (`upsert`, `is_postgres`, `advisory_key`, `is_conflict`) rather
than importing `sqlalchemy.dialects` or comparing dialect names itself; a test checks
that no module outside `newsletter.db` imports a dialect's `insert`.
"""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

from sqlalchemy import Connection, Engine, Table, TextClause, func, text, true
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

POSTGRESQL = "postgresql"
SQLITE = "sqlite"

# What dialect-dependent helpers accept: a dialect's name or anything bound to one.
Bind = str | Session | Connection | Engine

_INSERTS: dict[str, Any] = {POSTGRESQL: postgresql.insert, SQLITE: sqlite.insert}


def dialect_name(bind: Bind) -> str:
    if isinstance(bind, str):
        return bind
    if isinstance(bind, Session):
        return bind.get_bind().dialect.name
    return bind.dialect.name


def is_postgres(bind: Bind) -> bool:
    return dialect_name(bind) == POSTGRESQL


def upsert(table: Any, bind: Bind) -> Any:
    """`INSERT` for `table` with the dialect's `on_conflict_do_nothing/do_update` (both
    dialects spell them alike, but each has its own construct)."""
    return _INSERTS[dialect_name(bind)](table)


def upserts(table: Table) -> dict[str, Any]:
    """`upsert(table)` for each dialect, for statements built once at import."""
    return {name: insert(table) for name, insert in _INSERTS.items()}


def advisory_key(namespace: str, name: str) -> int:
    """A stable signed 64-bit PostgreSQL advisory-lock key for `name` within `namespace`
    (Python's hash() changes per process; the namespace keeps jobs and billing apart)."""
    digest = hashlib.sha256(f"bsd-{namespace}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


# PostgreSQL's transaction-scoped advisory locks: released when the transaction ends,
# including when the process holding one dies.
ADVISORY_XACT_LOCK: TextClause = text("SELECT pg_advisory_xact_lock(:key)")
TRY_ADVISORY_XACT_LOCK: TextClause = text("SELECT pg_try_advisory_xact_lock(:key)")

# A column to add to a transaction's first query on PostgreSQL: the same as
# `SET LOCAL synchronous_commit = off`, without a round trip of its own. The COMMIT then
# returns without waiting for the WAL to reach the disk. Only for rows whose loss in a
# crash of the database server in the moment after their commit costs little: read
# charges (losing one gives the reader that story back). Visibility and locks are
# unchanged, and the setting ends with the transaction.
NO_FLUSH_WAIT = func.set_config("synchronous_commit", "off", true()).label("no_flush_wait")

# SQLite per connection: WAL lets the web app and the worker read while the other writes;
# a writer waits this long for the write lock before "database is locked".
SQLITE_BUSY_TIMEOUT_SECONDS = 30
SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA foreign_keys=ON",
    f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_SECONDS * 1000}",
)

# PostgreSQL per connection. JIT compiling costs 50-150 ms a query, and overestimated
# costs started it on the enqueue's 4 ms chunk lookups; every query here is short.
POSTGRESQL_SETTINGS = {"jit": "off"}


def plan_each_run(session: Session) -> None:
    """For a transaction that grows a table it keeps reading (an import, an enqueue):
    plan every statement for its own values and the table's current size, until the
    transaction ends.

    psycopg prepares a statement after its fifth run, and PostgreSQL may then keep one
    generic plan made for the table as it was: an import's batch lookup, prepared while
    `readers` was nearly empty, went on scanning all 100,000 rows (1.8 s a batch instead
    of 15 ms). Not for every connection: re-planning the send loop's short statements
    cost it 12% of its rate.
    """
    if is_postgres(session):
        session.execute(text("SET LOCAL plan_cache_mode = force_custom_plan"))


# PostgreSQL SQLSTATEs that mean "run the transaction again": serialization_failure and
# deadlock_detected.
_RETRYABLE_SQLSTATES = frozenset({"40001", "40P01"})


def is_conflict(error: BaseException) -> bool:
    """Whether `error` (SQLAlchemy's or the driver's) is a collision with a concurrent
    transaction that a fresh run of the same transaction may not meet: a serialization
    failure or deadlock on PostgreSQL, the write lock taken ("database is locked") on
    SQLite."""
    orig = getattr(error, "orig", None) or error
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in _RETRYABLE_SQLSTATES
    if isinstance(orig, sqlite3.OperationalError):
        name = getattr(orig, "sqlite_errorname", "")
        return name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")) or "locked" in str(orig)
    return False
