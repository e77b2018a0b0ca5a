"""The daily reconciliation: re-read every live subscription from Stripe, so a missed
webhook heals by itself, and forget old webhook event ids."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import stripe
from flask import current_app
from sqlalchemy import select

from newsletter.billing.entitlement import LIVE_STATUSES, plan_for
from newsletter.billing.gateway import StripeGateway
from newsletter.billing.models import BillingSubscription
from newsletter.billing.stripe_objects import SubscriptionData, problem_invoice_id
from newsletter.billing.subscriptions import (
    Fetched,
    fetch_invoice,
    fetch_subscription,
    sync_subscription,
)
from newsletter.billing.webhooks import prune_events
from newsletter.db import Database, utcnow

log = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    listed: int = 0  # subscriptions Stripe listed for our price
    rechecked: int = 0  # stored live subscriptions Stripe no longer listed
    changed: int = 0  # whose plan or status the sync changed
    failed: list[str] = field(default_factory=list)
    pruned_events: int = 0


def _fingerprint(row: BillingSubscription | None) -> tuple[Any, ...] | None:
    if row is None:
        return None
    return (
        row.status,
        row.reader_id,
        row.cancel_at_period_end,
        row.cancel_at,
        row.trial_end,
        row.current_period_end,
        plan_for(row, utcnow()),
    )


def reconcile(db: Database, gw: StripeGateway, *, now: datetime | None = None) -> ReconcileReport:
    """Re-sync every live subscription from Stripe.

    Each subscription in its own short transaction: one failure is logged and counted,
    the rest carry on. Stripe's list (everything not canceled) finds subscriptions whose
    webhooks never arrived; our own live rows that it no longer lists (canceled since)
    are re-read one by one. Stripe is always read before the transaction."""
    report = ReconcileReport()
    price_id = current_app.config.get("STRIPE_PRICE_ID")
    seen: set[str] = set()
    pages = gw.list_subscriptions()
    while True:
        fetched_at = utcnow()
        page = next(pages, None)
        if page is None:
            break
        for obj in page:
            try:
                data = SubscriptionData.from_stripe(obj)
            except (KeyError, ValueError):
                continue
            seen.add(data.id)
            if not data.for_price(price_id):
                continue
            report.listed += 1
            try:
                invoice_id = problem_invoice_id(obj)
                invoices = {invoice_id: fetch_invoice(gw, invoice_id)} if invoice_id else {}
            except stripe.StripeError:
                log.exception("reconcile: subscription %s: invoice could not be read", data.id)
                report.failed.append(data.id)
                continue
            _reconcile_one(db, gw, report, data.id, Fetched(obj, fetched_at, invoices))
    with db.session() as session:
        stored = session.scalars(
            select(BillingSubscription.stripe_subscription_id).where(
                BillingSubscription.status.in_(LIVE_STATUSES)
            )
        ).all()
    for sub_id in stored:
        if sub_id not in seen:
            report.rechecked += 1
            try:
                fetched = fetch_subscription(gw, sub_id)
            except stripe.StripeError:
                log.exception("reconcile: subscription %s could not be read", sub_id)
                report.failed.append(sub_id)
                continue
            _reconcile_one(db, gw, report, sub_id, fetched)
    with db.session() as session:
        report.pruned_events = prune_events(session, now)
    return report


def _reconcile_one(
    db: Database, gw: StripeGateway, report: ReconcileReport, sub_id: str, fetched: Fetched
) -> None:
    try:
        with db.session() as session:
            before = _fingerprint(
                session.scalar(
                    select(BillingSubscription).where(
                        BillingSubscription.stripe_subscription_id == sub_id
                    )
                )
            )
            session.rollback()  # start the locked work in a fresh transaction (see `lock`)
            after = _fingerprint(sync_subscription(session, gw, sub_id, fetched=fetched))
            if after is not None and after != before:
                report.changed += 1
    except Exception:
        log.exception("reconcile: subscription %s failed", sub_id)
        report.failed.append(sub_id)
