"""The scheduler's persistent job store, declared here so Alembic owns its table too.

APScheduler's `SQLAlchemyJobStore` creates `apscheduler_jobs` itself when missing; declaring
the identical table here means migrations make it and APScheduler finds it already there.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, LargeBinary, Table, Unicode

from newsletter.db import Base

JOBS_TABLE = "apscheduler_jobs"

SchedulerJob = Table(
    JOBS_TABLE,
    Base.metadata,
    Column("id", Unicode(191), primary_key=True),
    Column("next_run_time", Float(25), index=True),
    Column("job_state", LargeBinary, nullable=False),
)
