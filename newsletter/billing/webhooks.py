"""Stripe webhook events, once each: `handle_event` is the whole pipeline after the
signature, and `_dispatch` the `match event["type"]` over the services.

1. Probe (`_probe`, one statement on the autocommit connection): an id stored before is
   a DUPLICATE; a re-sync event (`SYNC_ONLY_EVENTS`) whose subscription was stored from
   a read of Stripe that went out `READ_COVERS_EVENT_AFTER` or more after the event was
   created is answered from the stored state: re-reading Stripe would store what is
   stored already. This is what Stripe's retries look like after the endpoint was down:
   every queued event about a subscription at once, hours old, and one read of Stripe
   then serves them all.
2. Fetch from Stripe, holding no lock and no transaction (`_fetch`): the subscription
   (with any invoice an email needs) or the customer the event is about.
3. Write. PostgreSQL, a re-sync of a stored subscription whose write needs nothing but
   the row: the row is written only if it is still as the probe read it
   (`sync_unlocked`), then the id recorded; no transaction. Everything else, and a row
   another write changed meanwhile, takes the locked way: in the session's transaction,
   the id is recorded, the row locked and written (`sync_subscription`).

Every event id is recorded by `record_event`, a unique insert. A redelivery finds it
and does nothing; two deliveries at once race on the primary key, and the database makes
the second insert wait for the first transaction (PostgreSQL: that row; SQLite: its
write lock): if the first commits, the second is a duplicate; if it rolls back (the
handler failed, the webhook answered 500), the second does the work. On the locked way
the id and the changes commit together, and emails go out only after that commit.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, delete, literal, select
from sqlalchemy.orm import Session

from newsletter.billing.customers import fetch_customer, refresh_customer
from newsletter.billing.gateway import StripeGateway
from newsletter.billing.models import BillingSubscription, StripeEvent
from newsletter.billing.notifications import notify_trial_will_end
from newsletter.billing.stripe_objects import (
    event_created,
    invoice_subscription_id,
    payload_id,
)
from newsletter.billing.subscriptions import (
    SUBSCRIPTIONS,
    Fetched,
    fetch_subscription,
    sync_subscription,
    sync_unlocked,
    tell_failed_invoice,
)
from newsletter.db import (
    NO_FLUSH_WAIT,
    POSTGRESQL,
    SQLITE,
    DriverStatement,
    is_postgres,
    upsert,
    utcnow,
)

log = logging.getLogger(__name__)

DUPLICATE = "duplicate"
# Stripe retries a failed delivery for up to three days; ids are kept well past that.
EVENT_RETENTION = timedelta(days=30)

CHECKOUT_EVENTS = frozenset(
    {"checkout.session.completed", "checkout.session.async_payment_succeeded"}
)
SUBSCRIPTION_EVENTS = frozenset(
    {
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "customer.subscription.paused",
        "customer.subscription.resumed",
    }
)
INVOICE_EVENTS = frozenset({"invoice.paid", "invoice.payment_succeeded", "invoice.payment_failed"})
CUSTOMER_EVENTS = frozenset({"customer.updated", "customer.deleted"})
# Events whose whole handling is "re-read the subscription from Stripe and store it".
SYNC_ONLY_EVENTS = (
    CHECKOUT_EVENTS | SUBSCRIPTION_EVENTS | {"invoice.paid", "invoice.payment_succeeded"}
)
# A subscription stored from a read of Stripe's API that went out at least this long after
# an event was created already shows what the event reports, and anything since. Stripe
# stamps `created` in whole seconds by its clock: one second for that, one for our clock
# running ahead of Stripe's (NTP keeps servers within milliseconds of each other).
READ_COVERS_EVENT_AFTER = timedelta(seconds=2)


def event_subscription_id(event: Mapping[str, Any]) -> str | None:
    """The subscription an event is about, if any."""
    obj: Mapping[str, Any] = event["data"]["object"]
    kind = event["type"]
    if kind in CHECKOUT_EVENTS:
        if obj.get("mode") != "subscription":
            return None
        return payload_id(obj.get("subscription"))
    if kind in SUBSCRIPTION_EVENTS or kind == "customer.subscription.trial_will_end":
        return payload_id(obj.get("id"))
    if kind in INVOICE_EVENTS:
        return payload_id(invoice_subscription_id(obj))
    return None


# --- the event ledger ----------------------------------------------------------------------

_EVENTS = StripeEvent.__table__
_EVENT_COLUMNS = ("event_id", "type", "created", "received_at")


def _insert_event(dialect: str, *conditions: Any) -> Any:
    """The event's unique insert (its values selected, `conditions` holding); returns the
    id when it went in, nothing when it was stored before."""
    row = select(*(bindparam(name, type_=_EVENTS.c[name].type) for name in _EVENT_COLUMNS))
    return (
        upsert(_EVENTS, dialect)
        .from_select(_EVENT_COLUMNS, row.where(*conditions))
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(_EVENTS.c.event_id)
    )


# Built once: webhooks run this insert for every event they process. Not durable: on
# PostgreSQL its commit does not wait for the disk.
_RECORD_EVENT = {
    True: DriverStatement(_insert_event(POSTGRESQL), elsewhere=_insert_event(SQLITE)),
    False: DriverStatement(
        _insert_event(POSTGRESQL, NO_FLUSH_WAIT == "off"), elsewhere=_insert_event(SQLITE)
    ),
}


def record_event(connection: Connection, event: Mapping[str, Any], *, durable: bool = True) -> bool:
    """Store the event id, the one way an id is stored; False when it was stored before
    (a duplicate). `durable=False` only once the event's effect is stored already: then
    losing the id in a crash of the database server loses nothing (Stripe has its 200)."""
    values_ = {
        "event_id": event["id"],
        "type": str(event["type"])[:100],
        "created": event_created(event),
        "received_at": utcnow(),
    }
    return _RECORD_EVENT[durable].scalar(connection, values_) is not None


def prune_events(session: Session, now: datetime | None = None) -> int:
    """Forget event ids older than `EVENT_RETENTION`; how many went."""
    cutoff = (now or utcnow()) - EVENT_RETENTION
    result = session.execute(delete(StripeEvent).where(StripeEvent.received_at < cutoff))
    return result.rowcount or 0  # type: ignore[attr-defined]


# Seen before? And the event's subscription as stored (all None when not): one round trip,
# no transaction.
_ONE = select(literal(1).label("one")).subquery("one")
_PROBE = DriverStatement(
    select(
        select(_EVENTS.c.event_id)
        .where(_EVENTS.c.event_id == bindparam("event_id"))
        .scalar_subquery()
        .label("seen"),
        *SUBSCRIPTIONS.columns,
    ).select_from(
        _ONE.outerjoin(SUBSCRIPTIONS, SUBSCRIPTIONS.c.stripe_subscription_id == bindparam("sid"))
    )
)


@dataclass(frozen=True)
class _Probed:
    """The answer from the stored state (`outcome`), or None with the event's
    subscription as stored (`row`, read without a lock; PostgreSQL, re-sync events)."""

    outcome: str | None
    row: BillingSubscription | None = None


def _probe(connection: Connection, event: Mapping[str, Any]) -> _Probed:
    """Step 1: answer a verified event from what is stored, if that answers it.

    Asked always for a re-sync event on PostgreSQL (the statement also reads its
    subscription's row for `sync_unlocked`); for any other event, only once it is
    `READ_COVERS_EVENT_AFTER` old: a newer one cannot be covered and (Stripe retries
    minutes later at the earliest) is almost never a redelivery; a duplicate that fast
    is still caught by `record_event`'s unique insert."""
    created = event_created(event)
    sync_only = event["type"] in SYNC_ONLY_EVENTS and created is not None
    postgres = is_postgres(connection)
    if (
        not (sync_only and postgres)
        and created is not None
        and utcnow() < created + READ_COVERS_EVENT_AFTER
    ):
        return _Probed(None)
    sid = event_subscription_id(event) if sync_only else None
    found = _PROBE.mapping(connection, {"event_id": event["id"], "sid": sid})
    assert found is not None  # one row: `one` outer-joined to the subscription
    if found.pop("seen") is not None:
        return _Probed(DUPLICATE)
    row = BillingSubscription(**found) if found["id"] is not None else None
    if (
        row is not None
        and created is not None
        and row.synced_at >= created + READ_COVERS_EVENT_AFTER
    ):
        if not record_event(connection, event, durable=False):
            return _Probed(DUPLICATE)
        return _Probed(f"synced: {row.status} (stored from a later read)")
    return _Probed(None, row if postgres else None)


@dataclass(frozen=True)
class _Prefetched:
    """What an event's handler needs from Stripe, read before any lock (step 2)."""

    subscription: Fetched | None = None
    customer: dict[str, Any] | None = None


def _fetch(gw: StripeGateway, event: Mapping[str, Any]) -> _Prefetched:
    obj: Mapping[str, Any] = event["data"]["object"]
    if event["type"] in CUSTOMER_EVENTS:
        customer_id = payload_id(obj.get("id"))
        return _Prefetched(customer=fetch_customer(gw, customer_id) if customer_id else None)
    subscription_id = event_subscription_id(event)
    if subscription_id is None:
        return _Prefetched()
    invoice_id = payload_id(obj.get("id")) if event["type"] == "invoice.payment_failed" else None
    invoice_ids = [invoice_id] if invoice_id else []
    return _Prefetched(fetch_subscription(gw, subscription_id, invoice_ids=invoice_ids))


def handle_event(
    session: Session,
    gw: StripeGateway,
    event: Mapping[str, Any],
    *,
    unlocked: Connection | None = None,
) -> str:
    """Record and handle one verified event; returns what was done, for the log and the
    response body. The caller commits `session`.

    `unlocked`: an autocommit connection (`Database.autocommit`) for the probe and the
    unlocked write; without one, every event takes the locked way. It is held, outside
    any transaction, while Stripe is read."""
    row = None
    if unlocked is not None:
        probed = _probe(unlocked, event)
        if probed.outcome is not None:
            return probed.outcome
        row = probed.row
    fetched = _fetch(gw, event)
    if (
        unlocked is not None
        and row is not None
        and fetched.subscription is not None
        and sync_unlocked(unlocked, row, fetched.subscription)
    ):
        # Written over the state it was computed from: it stands even if another
        # delivery recorded the id meanwhile.
        recorded = record_event(unlocked, event, durable=False)
        return f"synced: {row.status}" if recorded else DUPLICATE
    if not record_event(session.connection(), event):
        return DUPLICATE
    return _dispatch(session, gw, event, fetched)


def _sync(
    session: Session, gw: StripeGateway, subscription_id: str | None, fetched: _Prefetched
) -> str:
    if not subscription_id:
        return "ignored: no subscription"
    row = sync_subscription(session, gw, subscription_id, fetched=fetched.subscription)
    return f"synced: {row.status}" if row is not None else "ignored: not ours"


def _dispatch(
    session: Session, gw: StripeGateway, event: Mapping[str, Any], fetched: _Prefetched
) -> str:
    """Handlers take only ids from the payload and everything else from Stripe's API
    (`fetched`), so any order of delivery ends in Stripe's current state."""
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
            return _trial_will_end(session, gw, subscription_id, fetched)
        case "invoice.paid" | "invoice.payment_succeeded":
            return _sync(session, gw, subscription_id, fetched)
        case "invoice.payment_failed":
            return _payment_failed(session, gw, obj, subscription_id, fetched)
        case "customer.updated" | "customer.deleted":
            if fetched.customer is None:
                return "ignored: no customer"
            return refresh_customer(session, fetched.customer)
        case _:
            return "ignored: unhandled type"


def _trial_will_end(
    session: Session, gw: StripeGateway, subscription_id: str | None, fetched: _Prefetched
) -> str:
    if not subscription_id:
        return "ignored: no subscription"
    row = sync_subscription(session, gw, subscription_id, fetched=fetched.subscription)
    if row is None or not row.our_price:
        return "ignored: not ours"
    if row.status != "trialing":
        return f"no email: subscription is {row.status}"
    if notify_trial_will_end(session, row):
        return "emailed: trial will end"
    return "no email: address refuses mail"


def _payment_failed(
    session: Session,
    gw: StripeGateway,
    invoice: Mapping[str, Any],
    subscription_id: str | None,
    fetched: _Prefetched,
) -> str:
    if not subscription_id:
        return "ignored: not a subscription invoice"
    invoice_id = payload_id(invoice.get("id"))
    if invoice_id is None:
        return "ignored: no invoice"
    told: dict[str, str] = {}
    row = sync_subscription(session, gw, subscription_id, fetched=fetched.subscription, told=told)
    if row is None or not row.our_price:
        return "ignored: not ours"
    if invoice_id in told:  # the sync saw the failure and gave the notice its outcome
        return told[invoice_id]
    assert fetched.subscription is not None  # fetched for its subscription id
    return tell_failed_invoice(session, row, invoice_id, fetched.subscription)
