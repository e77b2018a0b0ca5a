"""The worker's scheduler and its housekeeping job."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import func, select, text

from newsletter.db import utcnow
from newsletter.errors import RateLimited
from newsletter.ratelimit import RateLimitHit, hit, prune

EXPECTED_JOBS = {"prune_rate_limits", "deliver_due", "assemble_ahead"}


def test_worker_runs_with_its_jobs_in_the_database(tmp_path):
    """`newsletter worker` starts, stores its jobs in the app database, stops on SIGTERM."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from sqlalchemy import create_engine

    from newsletter.migrate import upgrade

    url = f"sqlite:///{tmp_path}/worker.db"
    upgrade(url)
    env = {**os.environ, "DATABASE_URL": url, "NEWSLETTER_INSTANCE": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "worker"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    engine = create_engine(url)
    try:
        deadline = time.monotonic() + 30
        ids: set[str] = set()
        while time.monotonic() < deadline and not ids >= EXPECTED_JOBS:
            time.sleep(0.2)
            with engine.connect() as conn:
                ids = set(conn.execute(text("SELECT id FROM apscheduler_jobs")).scalars())
        assert ids >= EXPECTED_JOBS
    finally:
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=30)[0]
        engine.dispose()
    assert proc.returncode == 0, output
    assert "worker started with jobs: " in output
    assert all(job in output for job in EXPECTED_JOBS)


def test_prune_removes_only_expired_windows(app, session):
    engine = app.extensions["db"].engine
    long_ago = utcnow() - timedelta(hours=3)
    hit(engine, "signup:ip", "10.0.0.1", 5, 60, now=long_ago)
    hit(engine, "signup:ip", "10.0.0.2", 5, 3600)
    assert prune(engine) == 1
    assert session.scalar(select(func.count()).select_from(RateLimitHit)) == 1


def test_window_resets_after_it_passes(app):
    engine = app.extensions["db"].engine
    start = utcnow().replace(minute=0, second=0, microsecond=0)
    for _ in range(2):
        hit(engine, "s", "v", 2, 3600, now=start)
    with pytest.raises(RateLimited):
        hit(engine, "s", "v", 2, 3600, now=start)
    hit(engine, "s", "v", 2, 3600, now=start + timedelta(hours=1))
