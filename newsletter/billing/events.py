"""Stripe webhook events, once each: `process_event` records the event id, then
`handle_billing_webhook_event` dispatches on its type to the services.

The id is inserted in the same transaction as the work. A redelivery finds it and does
nothing; two deliveries at once race on the primary key, and the database makes the
second insert wait for the first transaction (PostgreSQL: that row; SQLite: its write
lock): if the first commits, the second is a duplicate; if it rolls back (the handler
failed, the webhook answered 500), the second does the work. Nothing is half-written:
the id and the changes commit together, and emails go out only after that commit.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session

from newsletter.billing import services
from newsletter.billing.gateway import StripeGateway
from newsletter.billing.models import BillingSubscription, StripeEvent
from newsletter.db import utcnow

log = logging.getLogger(__name__)

DUPLICATE = "duplicate"
SUBSCRIPTION_EVENTS = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
    }
)


def _insert_event(dialect: str) -> Any:
    insert = services.INSERTS[dialect]
    columns = StripeEvent.__table__.c
    return (
        insert(StripeEvent.__table__)
        .values(
            event_id=bindparam("event_id"),
            type=bindparam("type"),
            created=bindparam("created", type_=columns.created.type),
            received_at=bindparam("received_at", type_=columns.received_at.type),
        )
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(columns.event_id)
    )


# Built once: webhooks run this insert for every event.
_INSERT_EVENT = {dialect: _insert_event(dialect) for dialect in services.INSERTS}


def record_event(session: Session, event: Mapping[str, Any]) -> bool:
    """Store the event id; False when it was stored before (a duplicate)."""
    created = event.get("created")
    connection = session.connection()
    inserted = connection.execute(
        _INSERT_EVENT[connection.dialect.name],
        {
            "event_id": event["id"],
            "type": str(event["type"])[:100],
            "created": datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None,
            "received_at": utcnow(),
        },
    ).scalar()
    return inserted is not None


_IS_RECORDED = select(StripeEvent.__table__.c.event_id).where(
    StripeEvent.__table__.c.event_id == bindparam("event_id")
)


def is_recorded(session: Session, event_id: str) -> bool:
    return session.connection().execute(_IS_RECORDED, {"event_id": event_id}).first() is not None


CHECKOUT_EVENTS = frozenset(
    {"checkout.session.completed", "checkout.session.async_payment_succeeded"}
)
INVOICE_EVENTS = frozenset({"invoice.paid", "invoice.payment_succeeded", "invoice.payment_failed"})


def event_subscription_id(event: Mapping[str, Any]) -> str | None:
    """The subscription an event is about, if any."""
    obj: Mapping[str, Any] = event["data"]["object"]
    kind = event["type"]
    if kind in CHECKOUT_EVENTS:
        if obj.get("mode") != "subscription":
            return None
        return services.stripe_id(obj.get("subscription"))
    if kind in SUBSCRIPTION_EVENTS or kind == "customer.subscription.trial_will_end":
        return services.stripe_id(obj.get("id"))
    if kind in INVOICE_EVENTS:
        return services.invoice_subscription_id(obj)
    return None


def process_event(session: Session, gw: StripeGateway, event: Mapping[str, Any]) -> str:
    """Record and handle one verified event. The caller commits.

    The event id is inserted in the same transaction as the handler's changes; the
    insert (primary key) is what decides between two deliveries at once. The event's
    subscription is read from Stripe before any row of it is locked. How the two are
    ordered depends on the database's locks:

    - PostgreSQL: the insert first, so a redelivery costs one statement; the Stripe read
      then waits under no lock anyone else needs (only this event id's).
    - SQLite: its one lock covers the whole database, so it is never held while waiting
      on Stripe: a plain read turns most redeliveries away, then Stripe is read, then
      the insert takes the lock for a short transaction."""
    subscription_id = event_subscription_id(event)
    if session.get_bind().dialect.name == "sqlite":
        if is_recorded(session, event["id"]):
            return DUPLICATE
        # A read transaction cannot take the write lock once another writer has
        # committed: end it before the insert.
        session.rollback()
        fetched = services.fetch_subscription(gw, subscription_id) if subscription_id else None
        if not record_event(session, event):
            return DUPLICATE
    else:
        if not record_event(session, event):
            return DUPLICATE
        fetched = services.fetch_subscription(gw, subscription_id) if subscription_id else None
    return handle_billing_webhook_event(session, gw, event, fetched)


def _sync(
    session: Session,
    gw: StripeGateway,
    subscription_id: str | None,
    fetched: services.Fetched | None,
) -> str:
    if not subscription_id:
        return "ignored: no subscription"
    row = services.sync_subscription(session, gw, subscription_id, fetched=fetched)
    return f"synced: {row.status}" if row is not None else "ignored: not ours"


def handle_billing_webhook_event(
    session: Session,
    gw: StripeGateway,
    event: Mapping[str, Any],
    fetched: services.Fetched | None = None,
) -> str:
    """Dispatch one event; returns what was done, for the log and the response body.

    Handlers take only ids from the payload and everything else from Stripe's API (read
    now, or `fetched` just before for the event's subscription), so any order of delivery
    ends in Stripe's current state."""
    obj: Mapping[str, Any] = event["data"]["object"]
    subscription_id = event_subscription_id(event)
    match event["type"]:
        case kind if kind in CHECKOUT_EVENTS:
            if obj.get("mode") != "subscription":
                return "ignored: not a subscription checkout"
            return _sync(session, gw, subscription_id, fetched)
        case kind if kind in SUBSCRIPTION_EVENTS:
            return _sync(session, gw, subscription_id, fetched)
        case "customer.subscription.trial_will_end":
            row = services.sync_subscription(session, gw, str(subscription_id), fetched=fetched)
            if row is None or not row.our_price:
                return "ignored: not ours"
            if row.status != "trialing":
                return f"no email: subscription is {row.status}"
            return (
                "emailed: trial will end"
                if services.notify_trial_will_end(session, row)
                else "no email: address refuses mail"
            )
        case "invoice.paid" | "invoice.payment_succeeded":
            return _sync(session, gw, subscription_id, fetched)
        case "invoice.payment_failed":
            return _payment_failed(session, gw, obj, fetched)
        case "customer.updated" | "customer.deleted":
            return services.refresh_customer(session, gw, str(obj.get("id")))
        case _:
            return "ignored: unhandled type"


def _payment_failed(
    session: Session,
    gw: StripeGateway,
    invoice: Mapping[str, Any],
    fetched: services.Fetched | None,
) -> str:
    subscription_id = services.invoice_subscription_id(invoice)
    if not subscription_id:
        return "ignored: not a subscription invoice"
    invoice_id = str(invoice["id"])
    told_before = session.scalar(
        select(BillingSubscription.payment_failure_invoice_id).where(
            BillingSubscription.stripe_subscription_id == subscription_id
        )
    )
    row = services.sync_subscription(session, gw, subscription_id, fetched=fetched)
    if row is None or not row.our_price:
        return "ignored: not ours"
    if row.payment_failure_invoice_id == invoice_id and told_before != invoice_id:
        return "emailed: payment failed"  # the sync saw the failure and told the reader
    return services.notify_failed_invoice(session, gw, row, invoice_id)
