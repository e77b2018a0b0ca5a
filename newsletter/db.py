"""Database plumbing: the declarative base, engines and the per-request session.

Services receive a `Session` and only `flush()`; the boundary (request, CLI command, job,
webhook) owns the transaction and commits once.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, cast

from flask import current_app, g
from sqlalchemy import (
    Connection,
    DateTime,
    Engine,
    Enum,
    MetaData,
    Table,
    create_engine,
    event,
    exc,
    func,
    true,
)
from sqlalchemy.engine import CursorResult, Result, make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.types import TypeDecorator

# Stable constraint names so Alembic migrations can refer to them on every backend.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite stores naive values)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: object) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# A column to add to a transaction's first query on PostgreSQL: the same as
# `SET LOCAL synchronous_commit = off`, without a round trip of its own. The transaction's
# COMMIT then returns without waiting for its WAL to reach the disk. Only for rows whose
# loss in a crash of the database server in the ~0.6 s after their commit costs little:
# read charges (losing one gives the reader that story back; it is charged again when
# reopened). The wait is a disk flush, more than all the rest of a read confirmation.
# Visibility and locks are unchanged (other transactions see the row at commit, as
# usual), so the meter's concurrency guarantee holds; and the setting ends with the
# transaction, so nothing else is affected.
NO_FLUSH_WAIT = func.set_config("synchronous_commit", "off", true()).label("no_flush_wait")


def str_enum(enum: type[StrEnum], length: int = 20) -> Enum:
    """A StrEnum stored by value in a plain VARCHAR (no native ENUM type to migrate)."""
    return Enum(
        enum,
        native_enum=False,
        create_constraint=False,
        length=length,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {datetime: UTCDateTime()}


# Execution option: this SQLite connection emits no BEGIN (see `Database.autocommit`).
_SQLITE_AUTOCOMMIT = "newsletter_sqlite_autocommit"


def table_of(model: type[Base]) -> Table:
    """The model's Core table, for statements written in Core (the ORM types `__table__`
    as any FromClause)."""
    return cast(Table, model.__table__)


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE, DELETE or INSERT touched (`Session.execute` types its result as a
    plain Result, which has no rowcount)."""
    return cast(CursorResult[Any], result).rowcount


def make_engine(url: str, **options: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None stops pysqlite from beginning transactions late (at the
        # first write) by itself; SQLAlchemy then emits BEGIN at the true start, so
        # SAVEPOINTs nest inside the caller's transaction (SQLAlchemy's pysqlite recipe).
        engine = create_engine(url, connect_args={"timeout": 30, "isolation_level": None})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            # WAL lets the web app and the worker read while the other writes.
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
            if not conn.get_execution_options().get(_SQLITE_AUTOCOMMIT):
                conn.exec_driver_sql("BEGIN")

        return engine
    engine = create_engine(url, pool_size=10, max_overflow=20, **options)
    _ping_when_idle(engine)
    return engine


# A pooled connection that sat unused longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling, only where it can matter.

    `pool_pre_ping` would cost every request a round trip (and on the tracked redirect and
    read confirmation, about as much as their own statements). A connection checked in a
    moment ago was working a moment ago: only one that sat idle (where a database restart
    or a firewall's idle timeout could have closed it) is pinged. If the server went away
    while a connection was busy anyway, its first statement fails, SQLAlchemy sees the
    disconnect and replaces the whole pool, so one request per worker errs at most.
    """

    @event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn, record) -> None:  # type: ignore[no-untyped-def]
        record.info["idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checked_out(dbapi_conn, record, _proxy) -> None:  # type: ignore[no-untyped-def]
        idle_since = record.info.get("idle_since")
        if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_conn)
            dbapi_conn.rollback()  # the ping began a transaction: end it
        except Exception as error:  # any driver error: this connection is gone
            # The pool discards this connection and checks out another (documented).
            raise exc.DisconnectionError() from error


class Database:
    """The app's engine and session factory, kept in `app.extensions["db"]`."""

    def __init__(self, url: str) -> None:
        self.engine = make_engine(url)
        self.sessionmaker = sessionmaker(self.engine, expire_on_commit=False)
        # PostgreSQL: a pool of its own for `autocommit`, whose connections stay in that
        # mode (switching a pooled connection there and back costs every request).
        self._autocommit_engine = (
            # Nothing to roll back when a connection goes back: every statement ended.
            make_engine(url, isolation_level="AUTOCOMMIT", pool_reset_on_return=None)
            if self.is_postgres
            else None
        )

    def dispose(self) -> None:
        self.engine.dispose()
        if self._autocommit_engine is not None:
            self._autocommit_engine.dispose()

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session for a job or command: commits on success, rolls back on error."""
        session = self.sessionmaker()
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
        finally:
            session.close()

    @contextmanager
    def autocommit(self) -> Iterator[Connection]:
        """A connection whose every statement is its own transaction, for statements that
        are atomic on their own. On PostgreSQL that spares the BEGIN and COMMIT round trips;
        on SQLite each statement takes the write lock only if it writes, and waits for it
        (a transaction that read first could not get it once another writer committed)."""
        if self._autocommit_engine is not None:
            with self._autocommit_engine.connect() as connection:
                yield connection
        else:
            with self.engine.connect() as connection:
                # pysqlite already runs with isolation_level=None: just emit no BEGIN.
                yield connection.execution_options(**{_SQLITE_AUTOCOMMIT: True})

    @property
    def is_postgres(self) -> bool:
        return self.engine.dialect.name == "postgresql"


class DriverStatement:
    """A Core statement for a hot path: on PostgreSQL compiled once and run on the driver's
    own cursor; on SQLite run through SQLAlchemy as usual.

    For the few statements a hot request runs (the read confirmation's charge, a webhook's
    event and subscription): SQLAlchemy's execution machinery costs more CPU than the
    statement does at the database. Its constants (literals, `+ 1`) are bound once here;
    the rest come per call. Only where values need no SQLAlchemy type processing on
    PostgreSQL (ints, strings, booleans, aware datetimes, which psycopg sends and returns
    as they are); SQLite, which stores datetimes naive, keeps the column types' processing.
    """

    def __init__(self, statement: Any, *, elsewhere: Any = None) -> None:
        """`elsewhere`: the statement for SQLite when it differs (dialect-specific inserts)."""
        from sqlalchemy.dialects import postgresql

        self.statement = statement if elsewhere is None else elsewhere
        compiled = statement.compile(dialect=postgresql.dialect())
        self.sql = str(compiled)
        self.constants = {k: v for k, v in compiled.params.items() if v is not None}
        self._names: list[str] | None = None

    def _run(self, connection: Connection, params: dict[str, Any]) -> Any:
        """The driver's cursor (the caller closes it) or SQLAlchemy's result."""
        if connection.dialect.name != "postgresql":
            return connection.execute(self.statement, params)
        cursor = connection.connection.driver_connection.cursor()  # type: ignore[union-attr]
        cursor.execute(self.sql, {**self.constants, **params})
        return cursor

    def first(self, connection: Connection, params: dict[str, Any]) -> tuple[Any, ...] | None:
        """The first row, or None."""
        with closing(self._run(connection, params)) as result:
            return tuple(row) if (row := result.fetchone()) is not None else None

    def mapping(self, connection: Connection, params: dict[str, Any]) -> dict[str, Any] | None:
        """The first row by column name, or None."""
        if connection.dialect.name != "postgresql":
            found = connection.execute(self.statement, params).mappings().first()
            return dict(found) if found is not None else None
        with closing(self._run(connection, params)) as cursor:
            row = cursor.fetchone()
            if row is None:
                return None
            if self._names is None:  # the statement's columns never change
                self._names = [c.name for c in cursor.description]
            return dict(zip(self._names, row, strict=True))

    def scalar(self, connection: Connection, params: dict[str, Any]) -> Any:
        """The first column of the first row, or None."""
        row = self.first(connection, params)
        return row[0] if row else None

    def execute(self, connection: Connection, params: dict[str, Any]) -> None:
        self._run(connection, params).close()


def get_db() -> Database:
    return current_app.extensions["db"]


def db_session() -> Session:
    """The session of the current request or app context, opened on first use."""
    if "db_session" not in g:
        g.db_session = get_db().sessionmaker()
    return g.db_session


def close_session(exc: BaseException | None = None) -> None:
    session: Session | None = g.pop("db_session", None)
    if session is not None:
        if exc is not None:
            session.rollback()
        session.close()
