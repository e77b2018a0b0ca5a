"""One run of a scheduled job at a time, whichever worker process asks."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

import jobs.tasks
from newsletter.db import utcnow
from newsletter.locks import JobLock, advisory_key, job_lock
from tests.delivery.conftest import add_readers, add_stories, inbox


def hold(db, name: str):  # type: ignore[no-untyped-def]
    """Take `name` in another thread (another worker) and keep it until released."""
    taken, release = threading.Event(), threading.Event()
    got: list[bool] = []

    def worker() -> None:
        with job_lock(db, name) as acquired:
            got.append(acquired)
            taken.set()
            release.wait(10)

    thread = threading.Thread(target=worker)
    thread.start()
    assert taken.wait(10)

    def stop() -> None:
        release.set()
        thread.join(10)

    return got, stop


class TestJobLock:
    def test_only_one_of_two_concurrent_runs_acts(self, app):
        db = app.extensions["db"]
        first, stop = hold(db, "deliver_due")
        try:
            with job_lock(db, "deliver_due") as second:
                pass
            with job_lock(db, "assemble_ahead") as other_job:
                pass
        finally:
            stop()
        assert first == [True]
        assert second is False
        assert other_job is True  # one lock per job, not one for all
        with job_lock(db, "deliver_due") as after:  # released when the holder is done
            assert after is True

    def test_the_lock_is_released_when_the_job_fails(self, app):
        db = app.extensions["db"]
        with pytest.raises(RuntimeError), job_lock(db, "deliver_due") as acquired:
            assert acquired
            raise RuntimeError("the job broke")
        with job_lock(db, "deliver_due") as again:
            assert again is True

    def test_a_lock_left_by_a_dead_worker_does_not_block_for_ever(self, app):
        db = app.extensions["db"]
        if db.is_postgres:
            # A worker killed mid-job: its connection goes, and its lock with it.
            dead = db.engine.raw_connection()
            dead.cursor().execute(
                "SELECT pg_try_advisory_xact_lock(%s)", (advisory_key("deliver_due"),)
            )
            with job_lock(db, "deliver_due") as while_alive:
                assert while_alive is False
            dead.invalidate()  # the socket closes: the server ends its session
        else:
            # On SQLite the lock row of a worker killed mid-job expires.
            with db.session() as session:
                soon = utcnow() + timedelta(minutes=5)
                session.add(JobLock(name="deliver_due", owner="dead:1:x", expires_at=soon))
            with job_lock(db, "deliver_due") as while_fresh:
                assert while_fresh is False
            with db.session() as session:
                session.get(JobLock, "deliver_due").expires_at = utcnow() - timedelta(seconds=1)
        with job_lock(db, "deliver_due") as afterwards:
            assert afterwards is True


class TestDeliverDueJob:
    def test_the_job_skips_while_another_worker_runs_it(self, app, smtp, monkeypatch):
        monkeypatch.setattr(jobs.tasks, "job_app", lambda: app)
        [reader] = add_readers(app, 1, timezone="UTC", hour=0)
        add_stories(app, utcnow())

        _, stop = hold(app.extensions["db"], "deliver_due")
        try:
            jobs.tasks.deliver_due()  # the other worker holds the lock: this one does nothing
        finally:
            stop()
        assert smtp.received == []

        jobs.tasks.deliver_due()
        assert len(inbox(smtp)[reader.email]) == 1
