"""The scheduled jobs. Referenced by import path so the persistent job store can hold them."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Any

from flask import Flask

from newsletter import logs, metrics

log = logging.getLogger(__name__)

# What a job returns when another worker holds its lock, or when it stopped without
# raising (the next run tries again).
SKIPPED = "skipped"
FAILED = "failed"


def scheduled(job: Callable[[], Any]) -> Callable[[], Any]:
    """Every run of a job: its name on each log line it writes, one line with its outcome
    (ok, skipped, failed) and duration, and the same in the job metrics."""
    name = job.__name__

    @functools.wraps(job)
    def run() -> Any:
        token = logs.job_name.set(name)
        started = time.monotonic()
        outcome = "failed"
        try:
            result = job()
            outcome = result if result in (SKIPPED, FAILED) else "ok"
            return result
        except Exception:
            log.exception("job %s failed", name)
            raise
        finally:
            seconds = time.monotonic() - started
            metrics.JOB_RUNS.labels(name, outcome).inc()
            metrics.JOB_SECONDS.labels(name).observe(seconds)
            log.info("job %s: %s in %.2f s", name, outcome, seconds)
            logs.job_name.reset(token)

    return run


@lru_cache(maxsize=1)
def job_app() -> Flask:
    from newsletter.app import create_app

    return create_app()


@scheduled
def prune_rate_limits() -> int:
    from newsletter.ratelimit import prune

    app = job_app()
    with app.app_context():
        removed = prune(app.extensions["db"].engine)
    log.info("pruned %d expired rate-limit windows", removed)
    return removed


@scheduled
def deliver_due() -> str | None:
    """Every minute: queue the readers whose local delivery time has come, and send.

    Under a database lock, so two worker processes never both run it; the other one
    skips its run. It does not wait for retries: the next minute's run picks them up.
    """
    from newsletter.delivery.sender import SendAborted
    from newsletter.delivery.services import deliver_due as run
    from newsletter.locks import job_lock

    app = job_app()
    with app.app_context(), job_lock(app.extensions["db"], "deliver_due") as acquired:
        if not acquired:
            log.info("deliver_due: another worker is running it; skipped")
            return SKIPPED
        try:
            result = run(app)
        except SendAborted as exc:  # nothing lost: the next minute's run tries again
            log.warning("deliver_due: %s", exc.message)
            return FAILED
    r = result.report
    if r.finished or r.retried:
        log.info(
            "deliver_due: sent %d, retried %d, failed %d, suppressed %d, resent after crash %d",
            r.sent,
            r.retried,
            r.failed,
            r.suppressed,
            r.resent_after_crash,
        )
    return None


@scheduled
def assemble_ahead() -> str | None:
    """Hourly: make the editions of local dates starting within two hours."""
    from newsletter.delivery.services import assemble_ahead as run
    from newsletter.locks import job_lock

    app = job_app()
    with app.app_context(), job_lock(app.extensions["db"], "assemble_ahead") as acquired:
        if not acquired:
            log.info("assemble_ahead: another worker is running it; skipped")
            return SKIPPED
        for result in run(app):
            log.info("assemble_ahead: %s: %s", result.day, result.outcome)
    return None


@scheduled
def reconcile_billing() -> str | None:
    """Daily: re-read every live Stripe subscription, so a missed webhook heals itself."""
    from newsletter.billing.gateway import gateway
    from newsletter.billing.reconcile import reconcile
    from newsletter.locks import job_lock

    app = job_app()
    if not app.config.get("STRIPE_SECRET_KEY"):
        log.info("reconcile_billing: billing is not configured; skipped")
        return SKIPPED
    db = app.extensions["db"]
    with app.app_context(), job_lock(db, "reconcile_billing", ttl=6 * 3600) as acquired:
        if not acquired:
            log.info("reconcile_billing: another worker is running it; skipped")
            return SKIPPED
        report = reconcile(db, gateway(app))
    log.info(
        "reconcile_billing: listed %d, rechecked %d, changed %d, failed %d, pruned %d events",
        report.listed,
        report.rechecked,
        report.changed,
        len(report.failed),
        report.pruned_events,
    )
    return None


@scheduled
def fetch_feeds() -> str | None:
    """Every few minutes: fetch the feeds that are due, each in its own transaction."""
    from newsletter.feeds.fetching import FetchSettings, fetch_due
    from newsletter.locks import job_lock

    app = job_app()
    db = app.extensions["db"]
    with app.app_context(), job_lock(db, "fetch_feeds", ttl=3600) as acquired:
        if not acquired:
            log.info("fetch_feeds: another worker is running it; skipped")
            return SKIPPED
        results = fetch_due(db, FetchSettings.from_config(app.config))
    failed = sum(1 for r in results if r.outcome == "error")
    new = sum(r.report.new for r in results)
    if results:
        log.info("fetch_feeds: %d feeds, %d new articles, %d failed", len(results), new, failed)
    return None


@scheduled
def fetch_bounces() -> str | None:
    """Every BOUNCE_FETCH_MINUTES: read the bounce mailbox, when there is one."""
    from newsletter.deliverability.mailbox import MailboxError
    from newsletter.deliverability.mailbox import fetch_bounces as run
    from newsletter.locks import job_lock

    app = job_app()
    if not app.config.get("BOUNCE_IMAP_URL"):
        return SKIPPED
    db = app.extensions["db"]
    with app.app_context(), job_lock(db, "fetch_bounces", ttl=3600) as acquired:
        if not acquired:
            log.info("fetch_bounces: another worker is running it; skipped")
            return SKIPPED
        try:
            summary = run(app)
        except MailboxError as exc:
            log.warning("fetch_bounces: %s", exc.message)
            return FAILED
    log.info("fetch_bounces: %s", summary.describe())
    return None


@scheduled
def send_import_invites() -> None:
    """Every minute: the next imported readers without documented consent get their
    opt-in email (IMPORT_INVITES_PER_RUN a run, so a big import goes out steadily)."""
    from newsletter.readers.importing import send_queued_invites

    app = job_app()
    with app.app_context(), app.extensions["db"].session() as session:
        sent = send_queued_invites(session)
    if sent:
        log.info("send_import_invites: sent %d opt-in emails", sent)
