"""The app's `Database` (engines and session factory) and the per-request session.

The transaction modes these open are named and described in `newsletter.db.transactions`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from flask import current_app, g
from sqlalchemy import Connection
from sqlalchemy.orm import Session, sessionmaker

from newsletter.db.dialect import is_postgres
from newsletter.db.engines import SQLITE_BEGIN, make_engine


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
    def session(self, *, write: bool = False) -> Iterator[Session]:
        """A unit of work for a job or command: commits on success, rolls back on error.

        `write=True` for one that reads and then writes what it read: on SQLite it takes
        the write lock at BEGIN, so another writer cannot commit between its reads and its
        first write (which would fail it with "database is locked"); it then waits for the
        lock instead. PostgreSQL's row locks need nothing here."""
        options = {SQLITE_BEGIN: "immediate"} if write and not self.is_postgres else None
        session = self.sessionmaker(execution_options=options or {})
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
                yield connection.execution_options(**{SQLITE_BEGIN: "none"})

    @property
    def is_postgres(self) -> bool:
        return is_postgres(self.engine)


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
