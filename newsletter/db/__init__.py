"""Database plumbing, one module per concern:

- `base`: the declarative base, its naming convention, UTC datetimes, `table_of`;
- `dialect`: every PostgreSQL/SQLite difference (`upsert`, advisory-lock keys,
  conflict detection, pragmas);
- `engines`: engines and their connection settings;
- `sessions`: the app's `Database` and the per-request session;
- `transactions`: the transaction modes, named, and the retry for colliding ones;
- `driver`: the DBAPI connection beneath SQLAlchemy's.

Import from here (`from newsletter.db import Base, db_session`): these names are the
package's interface.
"""

from __future__ import annotations

from newsletter.db.base import (
    NAMING_CONVENTION,
    Base,
    UTCDateTime,
    rowcount,
    str_enum,
    table_of,
    utcnow,
)
from newsletter.db.dialect import (
    NO_FLUSH_WAIT,
    POSTGRESQL,
    SQLITE,
    advisory_key,
    dialect_name,
    is_conflict,
    is_postgres,
    plan_each_run,
    upsert,
    upserts,
)
from newsletter.db.driver import DriverStatement, driver_connection
from newsletter.db.engines import PING_AFTER_IDLE_SECONDS, make_engine
from newsletter.db.sessions import Database, close_session, db_session, get_db
from newsletter.db.transactions import committed, retry_conflicts

__all__ = [
    "NAMING_CONVENTION",
    "NO_FLUSH_WAIT",
    "PING_AFTER_IDLE_SECONDS",
    "POSTGRESQL",
    "SQLITE",
    "Base",
    "Database",
    "DriverStatement",
    "UTCDateTime",
    "advisory_key",
    "close_session",
    "committed",
    "db_session",
    "dialect_name",
    "driver_connection",
    "get_db",
    "is_conflict",
    "is_postgres",
    "plan_each_run",
    "make_engine",
    "retry_conflicts",
    "rowcount",
    "str_enum",
    "table_of",
    "upsert",
    "upserts",
    "utcnow",
]
