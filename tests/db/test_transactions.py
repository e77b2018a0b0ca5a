"""The retry for colliding transactions and the writing unit of work, against a real
conflict between two connections on each database."""

from __future__ import annotations

import sqlite3
from datetime import timedelta

import pytest
from flask import Flask
from sqlalchemy import select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from newsletter.db import Database, committed, is_conflict, utcnow
from newsletter.ratelimit import RateLimitHit

COUNTER = RateLimitHit.key == "counter"


def _counter(db: Database, count: int = 0) -> None:
    with db.session() as session:
        session.add(
            RateLimitHit(
                key="counter", window_start=0, count=count, expires_at=utcnow() + timedelta(1)
            )
        )


def _count(db: Database) -> int:
    with db.session() as session:
        return session.scalar(select(RateLimitHit.count).where(COUNTER)) or 0


def _another_process_increments(db: Database) -> None:
    with db.engine.begin() as other:
        other.execute(update(RateLimitHit).where(COUNTER).values(count=RateLimitHit.count + 1))


def _increment_meeting(db: Database, collide_on: set[int], runs: list[int]):  # type: ignore[no-untyped-def]
    """Read the counter, write it plus one; on the runs in `collide_on` another process
    increments and commits between the read and the write."""

    def work(session: Session) -> None:
        runs.append(len(runs) + 1)
        if db.is_postgres:  # the isolation under which a lost update is refused
            session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        count = session.scalar(select(RateLimitHit.count).where(COUNTER))
        assert count is not None
        if runs[-1] in collide_on:
            _another_process_increments(db)
        session.execute(update(RateLimitHit).where(COUNTER).values(count=count + 1))

    return work


def test_a_transaction_that_collides_is_run_again_and_loses_no_update(app: Flask) -> None:
    db: Database = app.extensions["db"]
    _counter(db)
    runs: list[int] = []

    committed(db, _increment_meeting(db, {1}, runs), write=False)

    assert runs == [1, 2]
    assert _count(db) == 2  # the other process's increment and ours


def test_a_transaction_that_keeps_colliding_fails_after_three_runs(app: Flask) -> None:
    db: Database = app.extensions["db"]
    _counter(db)
    runs: list[int] = []

    with pytest.raises(OperationalError) as failure:
        committed(db, _increment_meeting(db, {1, 2, 3}, runs), write=False)

    assert is_conflict(failure.value)
    assert runs == [1, 2, 3]
    assert _count(db) == 3  # only the other process's increments were committed


def test_other_errors_are_not_retried_unless_named(app: Flask) -> None:
    db: Database = app.extensions["db"]
    _counter(db)
    runs: list[int] = []

    def duplicate(session: Session) -> None:
        runs.append(1)
        session.add(RateLimitHit(key="counter", window_start=0, count=9, expires_at=utcnow()))
        session.flush()

    with pytest.raises(IntegrityError) as failure:
        committed(db, duplicate)
    assert runs == [1]
    assert not is_conflict(failure.value)

    with pytest.raises(IntegrityError):
        committed(db, duplicate, also=(IntegrityError,))
    assert runs == [1, 1, 1, 1]
    assert _count(db) == 0


def test_a_writing_unit_of_work_keeps_other_writers_out_from_its_first_read(
    app: Flask, database_url: str
) -> None:
    """On SQLite `write=True` takes the write lock at BEGIN; on PostgreSQL the reading
    statement's row lock (`FOR UPDATE`) does the same for the row. Either way the other
    writer is refused (it gives up quickly here), and the work runs once."""
    db: Database = app.extensions["db"]
    _counter(db)
    refused: list[str] = []

    def work(session: Session) -> None:
        count = session.scalar(select(RateLimitHit.count).where(COUNTER).with_for_update())
        assert count is not None
        try:
            _impatient_writer(db, database_url)
        except (OperationalError, sqlite3.OperationalError) as error:
            refused.append(str(error))
        session.execute(update(RateLimitHit).where(COUNTER).values(count=count + 1))

    committed(db, work, attempts=1)

    assert len(refused) == 1
    assert _count(db) == 1


def _impatient_writer(db: Database, database_url: str) -> None:
    """Another process incrementing the counter, waiting at most 0.2 s for a lock."""
    if db.is_postgres:
        with db.engine.begin() as other:
            other.execute(text("SET LOCAL lock_timeout = '200ms'"))
            other.execute(update(RateLimitHit).where(COUNTER).values(count=RateLimitHit.count + 1))
        return
    other = sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=0.2)
    try:
        other.execute("UPDATE rate_limit_hits SET count = count + 1 WHERE key = 'counter'")
        other.commit()
    finally:
        other.close()
