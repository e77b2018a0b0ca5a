"""`newsletter worker`: APScheduler 3 with its job store in the app's own database.

Jobs are added with `replace_existing=True` and stable ids, so restarting the worker never
duplicates them; the persistent store keeps their next run times across restarts, and
`coalesce` with a grace time catches up once (not once per missed run) after downtime.
"""

from __future__ import annotations

import logging
import os
import signal
from typing import Any

from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.blocking import BlockingScheduler
from flask import Flask

from newsletter import logs
from newsletter.scheduling import JOBS_TABLE

log = logging.getLogger(__name__)

JOB_DEFAULTS: dict[str, Any] = {"coalesce": True, "max_instances": 1, "misfire_grace_time": 3600}


def build_scheduler(app: Flask) -> BlockingScheduler:
    db = app.extensions["db"]
    scheduler = BlockingScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=db.engine, tablename=JOBS_TABLE)},
        job_defaults=JOB_DEFAULTS,
        timezone="UTC",
    )
    scheduler.add_job(
        "jobs.tasks:prune_rate_limits",
        trigger="interval",
        hours=1,
        id="prune_rate_limits",
        replace_existing=True,
    )
    # Deliveries: every minute to the readers whose hour has come; editions made ahead.
    tick = int(app.config.get("WORKER_TICK_SECONDS", 60))
    scheduler.add_job(
        "jobs.tasks:deliver_due", "interval", seconds=tick, id="deliver_due", replace_existing=True
    )
    scheduler.add_job(
        "jobs.tasks:assemble_ahead", "interval", hours=1, id="assemble_ahead", replace_existing=True
    )  # noqa: E501
    # Imported readers without documented consent: their opt-in emails, at a steady rate.
    scheduler.add_job(
        "jobs.tasks:send_import_invites",
        "interval",
        seconds=tick,
        id="send_import_invites",
        replace_existing=True,
    )
    # Billing: once a day, re-read Stripe so a missed webhook heals itself.
    scheduler.add_job(
        "jobs.tasks:reconcile_billing",
        "cron",
        hour=3,
        minute=17,
        id="reconcile_billing",
        replace_existing=True,
    )
    # Feeds: fetch those due (each feed's own interval and backoff decide which).
    scheduler.add_job(
        "jobs.tasks:fetch_feeds", "interval", minutes=5, id="fetch_feeds", replace_existing=True
    )
    # Deliverability: the bounce mailbox, when BOUNCE_IMAP_URL names one.
    scheduler.add_job(
        "jobs.tasks:fetch_bounces",
        "interval",
        minutes=app.config["BOUNCE_FETCH_MINUTES"],
        id="fetch_bounces",
        replace_existing=True,
    )
    return scheduler


def run_worker(app: Flask) -> None:
    logs.configure(app.config["LOG_FORMAT"])
    port = os.environ.get("WORKER_METRICS_PORT")
    if port:  # a worker on its own host: Prometheus scrapes it directly (no token)
        from prometheus_client import start_http_server

        from newsletter.metrics import registry_for_scrape

        address = os.environ.get("WORKER_METRICS_ADDRESS", "127.0.0.1")
        start_http_server(int(port), addr=address, registry=registry_for_scrape(None))
    scheduler = build_scheduler(app)

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping the scheduler", signum)
        if not scheduler.running:  # still starting: nothing to wind down
            raise SystemExit(0)
        scheduler.shutdown(wait=True)

    signal.signal(signal.SIGTERM, stop)
    log.info("worker started with jobs: %s", ", ".join(j.id for j in scheduler.get_jobs()))
    scheduler.start()
