"""The driver's own connection, beneath SQLAlchemy: for COPY and the hottest statements."""

from __future__ import annotations

from contextlib import closing
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import Session

from newsletter.db.dialect import POSTGRESQL


def driver_connection(bind: Session | Connection) -> Any:
    """The DBAPI connection (psycopg's or sqlite3's) under `bind`'s current transaction:
    what is done on it is part of that transaction."""
    connection = bind.connection() if isinstance(bind, Session) else bind
    return connection.connection.driver_connection


class DriverStatement:
    """A Core statement for a hot path: on PostgreSQL compiled once and run on the driver's
    own cursor; on SQLite run through SQLAlchemy as usual.

    For the few statements a hot request runs (the read confirmation's charge, a webhook's
    event and subscription): SQLAlchemy's execution machinery costs more CPU than the
    statement does at the database. Its constants (literals, `+ 1`) are bound once here;
    the rest come per call. Only where values need no SQLAlchemy type processing on
    PostgreSQL (ints, strings, booleans, aware datetimes, which psycopg sends and returns
    as they are); SQLite, which stores datetimes naive, keeps the column types' processing.

    Its checks are spelled out rather than asked of `newsletter.db.dialect`: it runs on
    every hot request.
    """

    def __init__(self, statement: Any, *, elsewhere: Any = None) -> None:
        """`elsewhere`: the statement for SQLite when it differs (dialect-specific inserts)."""
        self.statement = statement if elsewhere is None else elsewhere
        compiled = statement.compile(dialect=postgresql.dialect())
        self.sql = str(compiled)
        self.constants = {k: v for k, v in compiled.params.items() if v is not None}
        self._names: list[str] | None = None

    def _run(self, connection: Connection, params: dict[str, Any]) -> Any:
        """The driver's cursor (the caller closes it) or SQLAlchemy's result."""
        if connection.dialect.name != POSTGRESQL:
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
        if connection.dialect.name != POSTGRESQL:
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
