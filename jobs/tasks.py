"""The scheduled jobs. Referenced by import path so the persistent job store can hold them."""

from __future__ import annotations

import logging
from functools import lru_cache

from flask import Flask

log = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def job_app() -> Flask:
    from newsletter.app import create_app

    return create_app()


def prune_rate_limits() -> int:
    from newsletter.ratelimit import prune

    app = job_app()
    with app.app_context():
        removed = prune(app.extensions["db"].engine)
    log.info("pruned %d expired rate-limit windows", removed)
    return removed


def deliver_due() -> None:
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
            return
        try:
            result = run(app)
        except SendAborted as exc:  # nothing lost: the next minute's run tries again
            log.warning("deliver_due: %s", exc.message)
            return
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


def assemble_ahead() -> None:
    """Hourly: make the editions of local dates starting within two hours."""
    from newsletter.delivery.services import assemble_ahead as run
    from newsletter.locks import job_lock

    app = job_app()
    with app.app_context(), job_lock(app.extensions["db"], "assemble_ahead") as acquired:
        if not acquired:
            log.info("assemble_ahead: another worker is running it; skipped")
            return
        for result in run(app):
            log.info("assemble_ahead: %s: %s", result.day, result.outcome)


def reconcile_billing() -> None:
    """Daily: re-read every live Stripe subscription, so a missed webhook heals itself."""
    from newsletter.billing.gateway import gateway
    from newsletter.billing.reconcile import reconcile
    from newsletter.locks import job_lock

    app = job_app()
    if not app.config.get("STRIPE_SECRET_KEY"):
        log.info("reconcile_billing: billing is not configured; skipped")
        return
    db = app.extensions["db"]
    with app.app_context(), job_lock(db, "reconcile_billing", ttl=6 * 3600) as acquired:
        if not acquired:
            log.info("reconcile_billing: another worker is running it; skipped")
            return
        report = reconcile(db, gateway(app))
    log.info(
        "reconcile_billing: listed %d, rechecked %d, changed %d, failed %d, pruned %d events",
        report.listed,
        report.rechecked,
        report.changed,
        len(report.failed),
        report.pruned_events,
    )


def send_import_invites() -> None:
    """Every minute: the next imported readers without documented consent get their
    opt-in email (IMPORT_INVITES_PER_RUN a run, so a big import goes out steadily)."""
    from newsletter.readers.importing import send_queued_invites

    app = job_app()
    with app.app_context(), app.extensions["db"].session() as session:
        sent = send_queued_invites(session)
    if sent:
        log.info("send_import_invites: sent %d opt-in emails", sent)
