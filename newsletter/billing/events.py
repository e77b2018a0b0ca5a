"""Stripe webhook events, once each: `settle_from_store` answers what the stored state
already answers (a redelivery; a re-sync that a later read of Stripe already covers);
on PostgreSQL `sync_unlocked` then handles a re-sync of a stored subscription that needs
no more than its row, without a transaction; otherwise `process_event` records the event
id, then `handle_billing_webhook_event` dispatches on its type to the services.

The id is inserted with the work: in one transaction, or (`sync_unlocked`) in the one
statement that writes the row only if it is as read. A redelivery finds it and does
nothing; two deliveries at once race on the primary key, and the database makes the
second insert wait for the first transaction (PostgreSQL: that row; SQLite: its write
lock): if the first commits, the second is a duplicate; if it rolls back (the handler
failed, the webhook answered 500), the second does the work. Nothing is half-written:
the id and the changes commit together, and emails go out only after that commit.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, bindparam, literal, select, true
from sqlalchemy.orm import Session

from newsletter.billing import services
from newsletter.billing.gateway import StripeGateway
from newsletter.billing.models import BillingSubscription, StripeEvent
from newsletter.db import NO_FLUSH_WAIT, DriverStatement, utcnow
from newsletter.errors import InvalidInput
from newsletter.readers.models import Reader
from newsletter.readers.suppression import may_email

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


# What Stripe's ids and event types look like; the columns hold 255 and 100 characters.
_STRIPE_ID = re.compile(r"[A-Za-z0-9_]{1,255}")
_EVENT_TYPE = re.compile(r"[a-z0-9_.]{1,100}")
# `created` is Unix time in whole seconds; past 2106 it is not a Stripe event's.
_MAX_CREATED = 2**32


class MalformedEvent(InvalidInput):
    """A signed body that is not a Stripe event the handlers can read: answer 400."""


def check_event(event: object) -> dict[str, Any]:
    """`event` if it has what every step relies on (an id and a type that the columns and
    PostgreSQL's text take, a `created` that is a date, `data.object` an object); else
    `MalformedEvent`. Checked before anything is stored, so nothing is half-written."""
    if not isinstance(event, dict):
        raise MalformedEvent("body is not a Stripe event: not a JSON object")
    event_id, kind, created = event.get("id"), event.get("type"), event.get("created")
    if not (isinstance(event_id, str) and _STRIPE_ID.fullmatch(event_id)):
        raise MalformedEvent("body is not a Stripe event: no valid id")
    if not (isinstance(kind, str) and _EVENT_TYPE.fullmatch(kind)):
        raise MalformedEvent("body is not a Stripe event: no valid type")
    if type(created) is not int or not 0 < created < _MAX_CREATED:
        raise MalformedEvent("body is not a Stripe event: created is not a Unix time")
    data = event.get("data")
    if not (isinstance(data, dict) and isinstance(data.get("object"), dict)):
        raise MalformedEvent("body is not a Stripe event: data.object is not an object")
    return event


def payload_id(value: Any) -> str | None:
    """An id from the event's object (maybe expanded), if it looks like Stripe's: a
    malformed one is no id, and its event is ignored."""
    found = services.stripe_id(value)
    return found if found is not None and _STRIPE_ID.fullmatch(found) else None


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


# Built once: webhooks run this insert for every event they process.
_INSERT_EVENT = {dialect: _insert_event(dialect) for dialect in services.INSERTS}
_RECORD_EVENT = DriverStatement(_INSERT_EVENT["postgresql"], elsewhere=_INSERT_EVENT["sqlite"])


def _created(event: Mapping[str, Any]) -> datetime | None:
    created = event.get("created")
    return datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None


def _event_values(event: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "event_id": event["id"],
        "type": str(event["type"])[:100],
        "created": _created(event),
        "received_at": utcnow(),
    }


def record_event(session: Session, event: Mapping[str, Any]) -> bool:
    """Store the event id; False when it was stored before (a duplicate)."""
    return _RECORD_EVENT.scalar(session.connection(), _event_values(event)) is not None


CHECKOUT_EVENTS = frozenset(
    {"checkout.session.completed", "checkout.session.async_payment_succeeded"}
)
INVOICE_EVENTS = frozenset({"invoice.paid", "invoice.payment_succeeded", "invoice.payment_failed"})
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
        return payload_id(services.invoice_subscription_id(obj))
    return None


_SUBSCRIPTIONS = services.SUBSCRIPTIONS
_EVENTS = StripeEvent.__table__


def _subscription_column(column: Any) -> Any:
    return (
        select(column)
        .where(_SUBSCRIPTIONS.c.stripe_subscription_id == bindparam("sid"))
        .scalar_subquery()
    )


_SEEN = (
    select(_EVENTS.c.event_id).where(_EVENTS.c.event_id == bindparam("event_id")).scalar_subquery()
)
_SYNCED_AT = _subscription_column(_SUBSCRIPTIONS.c.synced_at)
_STATUS = _subscription_column(_SUBSCRIPTIONS.c.status)
# Seen before? And the event's subscription as stored. One round trip, no transaction.
_PROBE = select(_SEEN.label("seen"), _SYNCED_AT.label("synced_at"), _STATUS.label("status"))


# The event's values as parameters (`_event_values`'s keys), for an insert selecting them.
_EVENT_COLUMNS = ("event_id", "type", "created", "received_at")
_EVENT_VALUES = select(*(bindparam(name, type_=_EVENTS.c[name].type) for name in _EVENT_COLUMNS))


def _record_event_from(values: Any, name: str) -> Any:
    """PostgreSQL: a CTE inserting the event id from `values` (`_EVENT_VALUES`, filtered),
    nothing when it is stored already; it returns the id it inserted."""
    return (
        services.INSERTS["postgresql"](_EVENTS)
        .from_select(_EVENT_COLUMNS, values)
        .on_conflict_do_nothing(index_elements=["event_id"])
        .returning(_EVENTS.c.event_id)
        .cte(name)
    )


def _settle_pg() -> DriverStatement:
    """PostgreSQL: the probe, the event's insert when the stored read covers it (a
    `covers_until` the read went out at or after), and the subscription's row as stored
    (its columns by name; all None when not stored), in one statement."""
    inserted = _record_event_from(
        _EVENT_VALUES.where(
            bindparam("covers_until", type_=_EVENTS.c.created.type) <= _SYNCED_AT,
            NO_FLUSH_WAIT == "off",  # an id lost in a crash costs nothing: see below
        ),
        "inserted",
    )
    one = select(literal(1).label("one")).subquery("one")
    row = services.SELECT_SUBSCRIPTION.lateral("subscription")
    statement = select(
        _SEEN.label("seen"),
        select(inserted.c.event_id).scalar_subquery().label("inserted"),
        *(row.c[c.key] for c in _SUBSCRIPTIONS.columns),
    ).select_from(one.outerjoin(row, true()))
    return DriverStatement(statement)


_SETTLE_PG = _settle_pg()


@dataclass(frozen=True)
class Settled:
    """What the stored state says of an event: the answer (`outcome`), or None with the
    event's subscription as stored (`row`, read without a lock; PostgreSQL, re-sync
    events) when there is one."""

    outcome: str | None
    row: BillingSubscription | None = None


def settle_from_store(connection: Connection, event: Mapping[str, Any]) -> Settled:
    """Answer a verified event from what is stored, on an autocommit connection
    (`Database.autocommit`); no outcome when it needs `sync_unlocked` or `process_event`.

    - A re-sync event (`SYNC_ONLY_EVENTS`) on PostgreSQL: always asked, in one statement
      that also reads its subscription's row for `sync_unlocked`.
    - Any other event created less than `READ_COVERS_EVENT_AFTER` ago: nothing to ask.
    - An id stored before: DUPLICATE, one read, no transaction.
    - A re-sync event whose subscription was stored from a read of Stripe that went out
      `READ_COVERS_EVENT_AFTER` or more after the event was created: re-reading Stripe
      would store what is stored already, so the id is recorded (on its own: there is no
      other work to go with it) and the stored state reported. This is what Stripe's
      retries look like after this endpoint was down: every queued event about a
      subscription at once, hours old, and one read of Stripe then serves them all. An
      event newer than the stored read, or of any other type, goes the whole way.

    PostgreSQL does it all in one statement, and does not wait for the id to reach the
    disk (`NO_FLUSH_WAIT`): Stripe has its 200 and the stored state already shows the
    event, so losing the id in a crash of the database server loses nothing. SQLite (no
    INSERT inside WITH) does it in two."""
    created = _created(event)
    sync_only = event["type"] in SYNC_ONLY_EVENTS and created is not None
    postgres = connection.dialect.name == "postgresql"
    if (
        not (sync_only and postgres)
        and created is not None
        and utcnow() < created + READ_COVERS_EVENT_AFTER
    ):
        # Too new for any stored read to cover it, and (Stripe retries minutes later, at
        # the earliest) almost never a redelivery: skip the probe. A duplicate delivered
        # this fast is still caught by the unique insert in `process_event`.
        return Settled(None)
    params = {
        **_event_values(event),
        "sid": event_subscription_id(event) if sync_only else None,
        "covers_until": created + READ_COVERS_EVENT_AFTER if created else None,
    }
    row = None
    if postgres:
        found = _SETTLE_PG.mapping(connection, params)
        assert found is not None  # one row: `one` outer-joined to the subscription
        seen, inserted = found.pop("seen"), found.pop("inserted")
        row = BillingSubscription(**found) if found["id"] is not None else None
        status = row.status if row is not None else None
    else:
        seen, synced_at, status = connection.execute(_PROBE, params).one()
        covered = seen is None and synced_at is not None and synced_at >= params["covers_until"]
        inserted = _RECORD_EVENT.scalar(connection, params) if covered else None
    if seen is not None:
        return Settled(DUPLICATE)
    if inserted is not None:
        return Settled(f"synced: {status} (stored from a later read)")
    # Not covered, or another delivery of it was inserted meanwhile (`process_event`
    # finds that out).
    return Settled(None, row)


def _unlocked_sync() -> DriverStatement:
    """PostgreSQL: the subscription's row written only if it is still as read
    (`services.UPDATE_UNLESS_CHANGED`), and the event id recorded only if it was; one
    statement, so both or neither. Returns (row id, event id), each None if not written."""
    updated = services.UPDATE_UNLESS_CHANGED.cte("updated")
    recorded = _record_event_from(_EVENT_VALUES.select_from(updated), "recorded")
    return DriverStatement(
        select(
            select(updated.c.id).scalar_subquery(), select(recorded.c.event_id).scalar_subquery()
        )
    )


_UNLOCKED_SYNC = _unlocked_sync()


def sync_unlocked(
    connection: Connection, gw: StripeGateway, event: Mapping[str, Any], row: BillingSubscription
) -> tuple[str | None, services.Fetched]:
    """A re-sync event about a stored subscription (`Settled.row`), without a transaction
    (PostgreSQL): read Stripe, then one autocommit statement (`_unlocked_sync`) writes what
    `apply_subscription` would, only if the row is still as `row` shows it, and records
    the event id with it, on the autocommit connection `settle_from_store` used. Two
    round trips to the database in all, where the locked way takes four.

    Returns the outcome, or None when the locked way (`process_event`, given what was
    fetched) must finish it: a write that needs more than the row (`unlocked_update`),
    or a row another write changed meanwhile. An event id recorded meanwhile by another
    delivery of it: DUPLICATE, and the row as written here stands (it is Stripe's state,
    written over the state it was computed from)."""
    fetched = services.fetch_subscription(gw, row.stripe_subscription_id)
    values_ = services.unlocked_update(row, fetched.obj, fetched.at) if fetched.obj else None
    if values_ is None:
        return None, fetched
    written, recorded = _UNLOCKED_SYNC.first(connection, {**values_, **_event_values(event)})
    if written is None:
        return None, fetched
    if recorded is None:
        return DUPLICATE, fetched
    return f"synced: {row.status}", fetched


def _record_and_lock() -> DriverStatement:
    """PostgreSQL: the event's insert, its subscription's row lock and the reader stored
    for the subscription's customer, in one statement. No row back: a duplicate; else
    the id recorded and the row locked (all None: none)."""
    recorded = _INSERT_EVENT["postgresql"].cte("recorded")
    row = services.SELECT_SUBSCRIPTION.with_for_update().lateral("subscription")
    customer_reader = services.CUSTOMER_READER.statement.scalar_subquery()
    return DriverStatement(
        select(
            recorded.c.event_id.label("recorded_event_id"),
            customer_reader.label("customer_reader_id"),
            row,
        ).select_from(recorded.outerjoin(row, true()))
    )


_RECORD_AND_LOCK = _record_and_lock()


def process_event(
    session: Session,
    gw: StripeGateway,
    event: Mapping[str, Any],
    fetched: services.Fetched | None = None,
) -> str:
    """Record and handle one verified event (after `settle_from_store`, and maybe
    `sync_unlocked`, gave no outcome). The caller commits.

    The event's subscription is read from Stripe first, under no lock (or `fetched` was,
    by `sync_unlocked`). Then the event id is inserted in the same transaction as the
    handler's changes; the insert (primary key) is what decides between two deliveries
    at once (both may have read Stripe).
    PostgreSQL inserts the id and locks the subscription's row in one statement; SQLite's
    insert takes its one write lock, which covers the row too."""
    subscription_id = event_subscription_id(event)
    if fetched is None and subscription_id:
        fetched = services.fetch_subscription(gw, subscription_id)
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        if not record_event(session, event):
            return DUPLICATE
        return handle_billing_webhook_event(session, gw, event, fetched)
    customer = services.stripe_id(fetched.obj.get("customer")) if fetched and fetched.obj else None
    found = _RECORD_AND_LOCK.mapping(
        connection, {**_event_values(event), "sid": subscription_id, "customer_id": customer}
    )
    if found is None:
        return DUPLICATE
    del found["recorded_event_id"]
    customer_reader = found.pop("customer_reader_id")
    row = BillingSubscription(**found) if found["id"] is not None else None
    known = (customer, customer_reader) if customer and customer_reader is not None else None
    locked = services.Locked(row, known)
    return handle_billing_webhook_event(session, gw, event, fetched, locked)


def _sync(
    session: Session,
    gw: StripeGateway,
    subscription_id: str | None,
    fetched: services.Fetched | None,
    locked: services.Locked | None,
) -> str:
    if not subscription_id:
        return "ignored: no subscription"
    row = services.sync_subscription(session, gw, subscription_id, fetched=fetched, locked=locked)
    return f"synced: {row.status}" if row is not None else "ignored: not ours"


def handle_billing_webhook_event(
    session: Session,
    gw: StripeGateway,
    event: Mapping[str, Any],
    fetched: services.Fetched | None = None,
    locked: services.Locked | None = None,
) -> str:
    """Dispatch one event; returns what was done, for the log and the response body.

    Handlers take only ids from the payload and everything else from Stripe's API (read
    now, or `fetched` just before for the event's subscription, whose row the transaction
    may have `locked` already), so any order of delivery ends in Stripe's current state."""
    obj: Mapping[str, Any] = event["data"]["object"]
    subscription_id = event_subscription_id(event)
    match event["type"]:
        case kind if kind in CHECKOUT_EVENTS:
            if obj.get("mode") != "subscription":
                return "ignored: not a subscription checkout"
            return _sync(session, gw, subscription_id, fetched, locked)
        case kind if kind in SUBSCRIPTION_EVENTS:
            return _sync(session, gw, subscription_id, fetched, locked)
        case "customer.subscription.trial_will_end":
            if not subscription_id:
                return "ignored: no subscription"
            row = services.sync_subscription(
                session, gw, subscription_id, fetched=fetched, locked=locked
            )
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
            return _sync(session, gw, subscription_id, fetched, locked)
        case "invoice.payment_failed":
            return _payment_failed(session, gw, obj, subscription_id, fetched, locked)
        case "customer.updated" | "customer.deleted":
            customer_id = payload_id(obj.get("id"))
            if customer_id is None:
                return "ignored: no customer"
            return services.refresh_customer(session, gw, customer_id)
        case _:
            return "ignored: unhandled type"


def _payment_failed(
    session: Session,
    gw: StripeGateway,
    invoice: Mapping[str, Any],
    subscription_id: str | None,
    fetched: services.Fetched | None,
    locked: services.Locked | None,
) -> str:
    if not subscription_id:
        return "ignored: not a subscription invoice"
    invoice_id = payload_id(invoice.get("id"))
    if invoice_id is None:
        return "ignored: no invoice"
    told_before = session.scalar(
        select(BillingSubscription.payment_failure_invoice_id).where(
            BillingSubscription.stripe_subscription_id == subscription_id
        )
    )
    row = services.sync_subscription(session, gw, subscription_id, fetched=fetched, locked=locked)
    if row is None or not row.our_price:
        return "ignored: not ours"
    if row.payment_failure_invoice_id == invoice_id and told_before != invoice_id:
        # The sync saw the failure and told the reader, unless the address is suppressed.
        reader = session.get(Reader, row.reader_id)
        if reader is not None and may_email(reader):
            return "emailed: payment failed"
        return "no email: address refuses mail"
    return services.notify_failed_invoice(session, gw, row, invoice_id)
