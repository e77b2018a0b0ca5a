"""Engines: one per database URL, with each backend's connection settings."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url

from newsletter.db.dialect import (
    POSTGRESQL_SETTINGS,
    SQLITE,
    SQLITE_BUSY_TIMEOUT_SECONDS,
    SQLITE_PRAGMAS,
)

# Execution option naming how a SQLite connection begins its transactions: absent is
# SQLite's deferred BEGIN (the write lock at the first write), "immediate" takes the write
# lock at BEGIN, "none" emits no BEGIN (every statement is its own transaction).
SQLITE_BEGIN = "newsletter_sqlite_begin"
_SQLITE_BEGINS = {None: "BEGIN", "immediate": "BEGIN IMMEDIATE", "none": None}


def make_engine(url: str, **options: Any) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == SQLITE:
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None stops pysqlite from beginning transactions late (at the
        # first write) by itself; SQLAlchemy then emits BEGIN at the true start, so
        # SAVEPOINTs nest inside the caller's transaction (SQLAlchemy's pysqlite recipe).
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS, "isolation_level": None},
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
            cur = dbapi_conn.cursor()
            for pragma in SQLITE_PRAGMAS:
                cur.execute(pragma)
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
            begin = _SQLITE_BEGINS[conn.get_execution_options().get(SQLITE_BEGIN)]
            if begin is not None:
                conn.exec_driver_sql(begin)

        return engine
    # libpq's `options` sets server settings at connect time (no extra round trip); any
    # given in the URL's own `options` come after ours, so an operator's choice wins.
    settings = " ".join(f"-c {name}={value}" for name, value in POSTGRESQL_SETTINGS.items())
    given = parsed.query.get("options")
    connect_args = {"options": f"{settings} {given}" if isinstance(given, str) else settings}
    connect_args.update(options.pop("connect_args", {}))
    engine = create_engine(url, pool_size=10, max_overflow=20, connect_args=connect_args, **options)
    _ping_when_idle(engine)
    return engine


# A pooled connection that sat unused longer than this is pinged before it is handed out.
PING_AFTER_IDLE_SECONDS = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """Pessimistic disconnect handling, only where it can matter.

    `pool_pre_ping` would cost every request a round trip (on the tracked redirect and
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
