"""Subscriptions: the one write path. Fetch from Stripe, then lock the row, apply what
Stripe said, and write it with `write_subscription`, the only function that writes a
subscription row, whoever asks (webhook, return from Checkout, reconciliation).

Subscriptions are never taken from a webhook's payload: they are re-read from Stripe's
API, and a write keeps whichever read is newest, so whatever order events arrive in,
the stored state ends as Stripe's current state.

Stripe is read before the row is locked (`fetch_subscription`, which also reads the
latest invoice of a subscription with a payment problem, for its email). One Stripe
call can still happen under the lock: `reader_for_customer` retrieving a customer that
no stored customer row names (one not made by our checkout), on the first sync of its
subscription, to match it to a reader.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import stripe
from flask import current_app
from sqlalchemy import Connection, bindparam, column, insert, select, update, values
from sqlalchemy.orm import Session

from newsletter.billing.customers import reader_for_customer
from newsletter.billing.gateway import StripeGateway, is_not_found
from newsletter.billing.locking import lock
from newsletter.billing.models import BillingSubscription
from newsletter.billing.notifications import notify_failed_invoice
from newsletter.billing.stripe_objects import (
    PAYMENT_PROBLEM,
    SubscriptionData,
    metadata_id,
    problem_invoice_id,
)
from newsletter.db import (
    POSTGRESQL,
    SQLITE,
    DriverStatement,
    is_postgres,
    table_of,
    upserts,
    utcnow,
)
from newsletter.editions.models import Edition
from newsletter.stories.models import Story
from newsletter.tracking.models import Event, EventKind

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fetched:
    """A subscription as Stripe's API returned it (None: Stripe has no such subscription)
    and when the request went out: rows synced later than `at` are fresher than it.
    `invoices`: invoices read with it, by id (None: Stripe has no such invoice)."""

    obj: dict[str, Any] | None
    at: datetime
    invoices: Mapping[str, dict[str, Any] | None] = field(default_factory=dict)


def fetch_invoice(gw: StripeGateway, invoice_id: str) -> dict[str, Any] | None:
    try:
        return gw.retrieve_invoice(invoice_id)
    except stripe.StripeError as exc:
        if is_not_found(exc):
            return None
        raise


def fetch_subscription(
    gw: StripeGateway, subscription_id: str, *, invoice_ids: Iterable[str] = ()
) -> Fetched:
    """Read a subscription from Stripe, with `invoice_ids` and, when it shows a payment
    problem, its latest invoice: everything a sync may need from Stripe but a customer."""
    at = utcnow()
    try:
        obj = gw.retrieve_subscription(subscription_id)
    except stripe.StripeError as exc:
        if is_not_found(exc):
            return Fetched(None, at)
        raise
    wanted = list(invoice_ids)
    latest = problem_invoice_id(obj)
    if latest is not None:
        wanted.append(latest)
    return Fetched(obj, at, {i: fetch_invoice(gw, i) for i in dict.fromkeys(wanted)})


SUBSCRIPTIONS = table_of(BillingSubscription)
# The statements a webhook runs for nearly every event, built once with bound parameters:
# building them per call (cache keys over 20-odd values) cost more than running them.
_WRITABLE = [c for c in SUBSCRIPTIONS.columns if c.key != "id"]
SELECT_SUBSCRIPTION = select(SUBSCRIPTIONS).where(
    SUBSCRIPTIONS.c.stripe_subscription_id == bindparam("sid")
)
# PostgreSQL locks the row; SQLite has no row locks (its write lock is taken first).
_LOCK_SUBSCRIPTION = DriverStatement(
    SELECT_SUBSCRIPTION.with_for_update(), elsewhere=SELECT_SUBSCRIPTION
)
# A first sync claims the subscription by inserting it: a second first sync of it waits on
# that insert (the unique id), then finds the row and syncs again over it.
_INSERT_SUBSCRIPTION = {
    dialect: insert_.values({c: bindparam(c.key, type_=c.type) for c in _WRITABLE})
    .on_conflict_do_nothing(index_elements=["stripe_subscription_id"])
    .returning(SUBSCRIPTIONS.c.id)
    for dialect, insert_ in upserts(SUBSCRIPTIONS).items()
}
_STORE_SUBSCRIPTION = DriverStatement(
    _INSERT_SUBSCRIPTION[POSTGRESQL], elsewhere=_INSERT_SUBSCRIPTION[SQLITE]
)
_UPDATE = (
    update(SUBSCRIPTIONS)
    .values({c: bindparam(c.key, type_=c.type) for c in _WRITABLE})
    .where(SUBSCRIPTIONS.c.id == bindparam("row_id"))
)
_UPDATE_SUBSCRIPTION = DriverStatement(_UPDATE)
# The row read without a lock, written only if no other write came in between (every
# write sets `synced_at`, to the time of its read of Stripe): see `sync_unlocked`.
_UPDATE_UNLESS_CHANGED = DriverStatement(
    _UPDATE.where(
        SUBSCRIPTIONS.c.synced_at
        == bindparam("was_synced_at", type_=SUBSCRIPTIONS.c.synced_at.type)
    ).returning(SUBSCRIPTIONS.c.id)
)


def _store_with_funnel() -> DriverStatement:
    """PostgreSQL: a new subscription and its funnel events (one or two: trial started,
    paid) in one statement; the events only if the subscription was inserted."""
    stored = _INSERT_SUBSCRIPTION[POSTGRESQL].cte("stored")
    events = table_of(Event)
    steps = values(
        column("kind", events.c.kind.type), column("at", events.c.at.type), name="steps"
    ).data([(bindparam("kind_1"), bindparam("at_1")), (bindparam("kind_2"), bindparam("at_2"))])
    funnel = (
        insert(events)
        .from_select(
            ["kind", "reader_id", "story_id", "edition_id", "at"],
            select(
                steps.c.kind,
                bindparam("reader_id", type_=events.c.reader_id.type),
                bindparam("funnel_story_id", type_=events.c.story_id.type),
                bindparam("funnel_edition_id", type_=events.c.edition_id.type),
                steps.c.at,
            )
            .select_from(stored, steps)
            .where(steps.c.kind.is_not(None)),
        )
        .cte("funnel")
    )
    return DriverStatement(select(stored.c.id).add_cte(funnel))


_STORE_WITH_FUNNEL = _store_with_funnel()


class _StoredMeanwhile(Exception):
    """Another transaction stored the subscription after this one found no row."""


def write_subscription(
    connection: Connection,
    row: BillingSubscription,
    funnel: list[dict[str, Any]] | None = None,
    *,
    if_synced_at: datetime | None = None,
) -> bool:
    """Write `row` (a detached snapshot, as `lock_subscription` gives) and its `funnel`
    events: the only writer of subscription rows. A new row claims the subscription (see
    `_INSERT_SUBSCRIPTION`); on PostgreSQL it and its events are one statement.

    `if_synced_at`: a stored row read without a lock is written only if its `synced_at`
    is still that; False when another write came in between (nothing written)."""
    values_ = {c.key: getattr(row, c.key) for c in _WRITABLE}
    funnel = funnel or []
    if row.id is not None and if_synced_at is not None:
        params = {**values_, "row_id": row.id, "was_synced_at": if_synced_at}
        if _UPDATE_UNLESS_CHANGED.scalar(connection, params) is None:
            return False
    elif row.id is not None:
        _UPDATE_SUBSCRIPTION.execute(connection, {**values_, "row_id": row.id})
    elif funnel and is_postgres(connection) and len(funnel) <= 2:
        steps = [(e["kind"].value, e["at"]) for e in funnel] + [(None, None)] * 2
        row.id = _STORE_WITH_FUNNEL.scalar(
            connection,
            {
                **values_,
                "kind_1": steps[0][0], "at_1": steps[0][1],
                "kind_2": steps[1][0], "at_2": steps[1][1],
                "funnel_story_id": funnel[0]["story_id"],
                "funnel_edition_id": funnel[0]["edition_id"],
            },
        )  # fmt: skip
        funnel = []  # stored with the row
    else:
        row.id = _STORE_SUBSCRIPTION.scalar(connection, values_)
    if row.id is None:
        raise _StoredMeanwhile(row.stripe_subscription_id)
    if funnel:
        # Core on the connection, not the ORM: nothing reads these rows back.
        connection.execute(insert(table_of(Event)), funnel)
    return True


def lock_subscription(session: Session, subscription_id: str) -> BillingSubscription | None:
    """Lock one subscription until the transaction ends; a snapshot of its row, if any.

    PostgreSQL: the row lock (SELECT … FOR UPDATE). A subscription not stored yet has no
    row to lock: its first sync claims it by inserting it (`write_subscription`), and of
    two first syncs at once, the second's insert waits for the first's transaction, finds
    the row and syncs again over it (`sync_subscription`). SQLite: the database's write
    lock.

    The snapshot is a detached `BillingSubscription`, written back with one Core
    statement: webhooks run this for nearly every event, and the ORM's unit of work
    costs more here than the statements themselves."""
    connection = session.connection()
    if not is_postgres(connection):
        lock(session, f"subscription:{subscription_id}")
    found = _LOCK_SUBSCRIPTION.mapping(connection, {"sid": subscription_id})
    return BillingSubscription(**found) if found is not None else None


def _existing_id(session: Session, model: type[Story] | type[Edition], raw: Any) -> int | None:
    row_id = metadata_id(raw)
    if row_id is not None and session.get(model, row_id) is not None:
        return row_id
    return None


def _funnel_steps(
    row: BillingSubscription, data: SubscriptionData, now: datetime
) -> list[tuple[EventKind, datetime]]:
    """Trial started and paid, once each per subscription: marks them on `row`."""
    steps: list[tuple[EventKind, datetime]] = []
    if row.trial_recorded_at is None and (data.trial_start or data.status == "trialing"):
        steps.append((EventKind.TRIAL_STARTED, data.trial_start or now))
        row.trial_recorded_at = now
    if row.paid_recorded_at is None and data.status == "active" and row.our_price:
        steps.append((EventKind.PAID, now))
        row.paid_recorded_at = now
    return steps


def _funnel_rows(
    session: Session,
    row: BillingSubscription,
    data: SubscriptionData,
    steps: list[tuple[EventKind, datetime]],
) -> list[dict[str, Any]]:
    """The funnel events, with the story and edition the checkout came from (carried in
    the subscription's metadata)."""
    if not steps:
        return []
    story_id = _existing_id(session, Story, data.metadata.get("story_id"))
    edition_id = _existing_id(session, Edition, data.metadata.get("edition_id"))
    return [
        {"kind": kind, "reader_id": row.reader_id, "story_id": story_id,
         "edition_id": edition_id, "at": at}
        for kind, at in steps
    ]  # fmt: skip


def _set_fields(
    row: BillingSubscription, data: SubscriptionData, ours: bool, reader_id: int,
    fetched_at: datetime,
) -> list[tuple[EventKind, datetime]]:  # fmt: skip
    """Set `row` to Stripe's state read at `fetched_at`; the funnel steps this reaches."""
    row.reader_id = reader_id
    row.stripe_customer_id = data.customer_id
    row.price_id = data.price_ids[0] if data.price_ids else None
    row.our_price = ours
    row.status = data.status
    row.trial_start = data.trial_start
    row.trial_end = data.trial_end
    row.current_period_start = data.current_period_start
    row.current_period_end = data.current_period_end
    row.cancel_at_period_end = data.cancel_at_period_end
    row.cancel_at = data.cancel_at
    row.canceled_at = data.canceled_at
    row.ended_at = data.ended_at
    if data.status == "past_due":
        # The failed invoice is the one opening the current period, so the grace
        # period counts from its start, whenever we first hear of it.
        if row.past_due_since is None:
            start = data.current_period_start
            row.past_due_since = min(start, fetched_at) if start else fetched_at
    else:
        row.past_due_since = None
    row.synced_at = fetched_at
    return _funnel_steps(row, data, fetched_at)


def _ours(data: SubscriptionData) -> bool:
    return data.for_price(current_app.config.get("STRIPE_PRICE_ID"))


def tell_failed_invoice(
    session: Session, row: BillingSubscription, invoice_id: str | None, fetched: Fetched
) -> str:
    """`notify_failed_invoice` with the invoice read in `fetched`, writing the row when it
    told the reader (its `payment_failure_invoice_id`)."""
    told_before = row.payment_failure_invoice_id
    invoice = fetched.invoices.get(invoice_id) if invoice_id else None
    outcome = notify_failed_invoice(session, row, invoice_id, invoice)
    if row.payment_failure_invoice_id != told_before:
        write_subscription(session.connection(), row)
    return outcome


def apply_subscription(
    session: Session,
    gw: StripeGateway,
    fetched: Fetched,
    *,
    row: BillingSubscription | None,
    told: dict[str, str] | None = None,
) -> BillingSubscription | None:
    """Write a subscription as `fetched` from Stripe over its `row` (from
    `lock_subscription`, so nobody else writes it meanwhile). `told`, when given, gets
    the outcome of the failed-invoice notice the write made, by invoice id.

    Ignored (None): another product's subscription we never had, or a customer no reader
    matches. A row synced after `fetched.at` is fresher than `fetched` and is left alone."""
    assert fetched.obj is not None
    data = SubscriptionData.from_stripe(fetched.obj)
    ours = _ours(data)
    if row is None and not ours:
        return None
    if row is not None and row.synced_at > fetched.at:
        return row
    if row is not None and row.stripe_customer_id == data.customer_id:
        reader_id: int | None = row.reader_id  # matched before; the stored match wins
    else:
        reader_id = reader_for_customer(session, gw, data.customer_id)
    if reader_id is None:
        if row is None:
            log.info("subscription %s: no reader for customer %s", data.id, data.customer_id)
            return None
        reader_id = row.reader_id
    if row is None:
        row = BillingSubscription(
            stripe_subscription_id=data.id,
            created_at=fetched.at,
            trial_recorded_at=None,
            paid_recorded_at=None,
            past_due_since=None,
            payment_failure_invoice_id=None,
        )
    steps = _set_fields(row, data, ours, reader_id, fetched.at)
    write_subscription(session.connection(), row, _funnel_rows(session, row, data, steps))
    if row.status in PAYMENT_PROBLEM:
        # Stripe's state says a payment failed: tell the reader once, whether or not the
        # invoice.payment_failed event arrives (localstripe, for one, never sends it).
        outcome = tell_failed_invoice(session, row, data.latest_invoice_id, fetched)
        if told is not None and data.latest_invoice_id:
            told[data.latest_invoice_id] = outcome
    return row


def sync_subscription(
    session: Session,
    gw: StripeGateway,
    subscription_id: str,
    *,
    fetched: Fetched | None = None,
    told: dict[str, str] | None = None,
) -> BillingSubscription | None:
    """Re-read one subscription from Stripe (or take `fetched`, read earlier by the
    caller, holding no lock) and store it: lock its row, then `apply_subscription`,
    which keeps whichever read is newer, this one or what another sync stored meanwhile.
    `told`: as `apply_subscription`'s."""
    fetched = fetched or fetch_subscription(gw, subscription_id)
    if fetched.obj is None:
        log.warning("subscription %s: not found at Stripe", subscription_id)
        return None
    for _ in range(3):  # a second try finds the row; a third only if it was deleted
        row = lock_subscription(session, subscription_id)
        try:
            return apply_subscription(session, gw, fetched, row=row, told=told)
        except _StoredMeanwhile:
            continue  # the row is there now (committed): lock it and sync over it
    raise RuntimeError(f"subscription {subscription_id} kept changing while it was stored")


def sync_unlocked(connection: Connection, row: BillingSubscription, fetched: Fetched) -> bool:
    """Write `fetched` over a stored `row` read without a lock, on an autocommit
    `connection`, when the write is all `apply_subscription` would do and the row is
    still as read. False when it needs the locked way (nothing written): a fresher row,
    another customer, a funnel step, a payment problem to tell, or a row another write
    changed meanwhile."""
    if fetched.obj is None:
        return False
    data = SubscriptionData.from_stripe(fetched.obj)
    if row.synced_at > fetched.at or row.stripe_customer_id != data.customer_id:
        return False
    was_synced_at = row.synced_at
    if _set_fields(row, data, _ours(data), row.reader_id, fetched.at):
        return False
    if row.status in PAYMENT_PROBLEM:
        return False
    return write_subscription(connection, row, if_synced_at=was_synced_at)
