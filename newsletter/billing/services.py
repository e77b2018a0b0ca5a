"""Billing use cases: customers, checkout, the portal, subscription sync, emails, and the
daily reconciliation. Every entrypoint (the billing views, the webhook, the job, the CLI)
calls these; they `flush()` and never `commit()`.

Subscriptions are never taken from a webhook's payload: `sync_subscription` re-reads the
subscription from Stripe's API and writes it under a per-subscription lock, keeping
whichever read is newest, so whatever order events arrive in, the stored state ends as
Stripe's current state. Stripe is read before the lock where the caller can (webhook,
return from Checkout, reconciliation): nothing waits on Stripe while holding a lock.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import stripe
from flask import current_app
from sqlalchemy import bindparam, column, delete, func, insert, select, text, update, values
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from newsletter.billing.entitlement import LIVE_STATUSES, Plan, best, had_trial, plan_for
from newsletter.billing.gateway import PRICE_LOOKUP_KEY, StripeGateway, is_not_found
from newsletter.billing.models import BillingCustomer, BillingSubscription, StripeEvent
from newsletter.db import Database, DriverStatement, utcnow
from newsletter.editions.models import Edition
from newsletter.errors import InvalidInput, NewsletterError, NotFound
from newsletter.inputs import parse_id
from newsletter.readers.models import Reader
from newsletter.readers.suppression import email_reader
from newsletter.stories.models import Story
from newsletter.tracking.models import Event, EventKind

log = logging.getLogger(__name__)

# Stripe retries a failed delivery for up to three days; ids are kept well past that.
EVENT_RETENTION = timedelta(days=30)


class AlreadySubscribed(NewsletterError):
    """Checkout asked for by a reader whose trial or paid plan is running."""


class NoBillingAccount(NewsletterError):
    """The portal asked for by a reader Stripe has never heard of."""


# --- reading Stripe's objects ------------------------------------------------------------


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int | float) else None


def stripe_id(value: Any) -> str | None:
    """An id from a field that may be expanded into an object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


@dataclass(frozen=True)
class SubscriptionData:
    """The fields of a Stripe subscription that decide a plan, across API versions (since
    2025-03-31 the billing period lives on the items; localstripe still has it on top)."""

    id: str
    customer_id: str
    status: str
    price_ids: tuple[str, ...]
    lookup_keys: tuple[str, ...]
    trial_start: datetime | None
    trial_end: datetime | None
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    cancel_at: datetime | None
    canceled_at: datetime | None
    ended_at: datetime | None
    latest_invoice_id: str | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def from_stripe(cls, obj: Mapping[str, Any]) -> SubscriptionData:
        items = (obj.get("items") or {}).get("data") or []
        price_ids: list[str] = []
        lookup_keys: list[str] = []
        starts: list[int] = []
        ends: list[int] = []
        for item in items:
            price = item.get("price") or item.get("plan")
            if isinstance(price, Mapping):
                if price.get("id"):
                    price_ids.append(price["id"])
                if price.get("lookup_key"):
                    lookup_keys.append(price["lookup_key"])
            elif isinstance(price, str):
                price_ids.append(price)
            if isinstance(item.get("current_period_start"), int):
                starts.append(item["current_period_start"])
            if isinstance(item.get("current_period_end"), int):
                ends.append(item["current_period_end"])
        customer = stripe_id(obj.get("customer"))
        if not customer:
            raise ValueError(f"subscription {obj.get('id')} has no customer")
        return cls(
            id=str(obj["id"]),
            customer_id=customer,
            status=str(obj.get("status") or ""),
            price_ids=tuple(price_ids),
            lookup_keys=tuple(lookup_keys),
            trial_start=_ts(obj.get("trial_start")),
            trial_end=_ts(obj.get("trial_end")),
            current_period_start=_ts(min(starts) if starts else obj.get("current_period_start")),
            current_period_end=_ts(max(ends) if ends else obj.get("current_period_end")),
            cancel_at_period_end=bool(obj.get("cancel_at_period_end")),
            cancel_at=_ts(obj.get("cancel_at")),
            canceled_at=_ts(obj.get("canceled_at")),
            ended_at=_ts(obj.get("ended_at")),
            latest_invoice_id=stripe_id(obj.get("latest_invoice")),
            metadata=obj.get("metadata") or {},
        )

    def for_price(self, price_id: str | None) -> bool:
        """Ours when it is for the configured price, or for a price carrying our lookup
        key (so webhooks are understood even before STRIPE_PRICE_ID is set)."""
        return (price_id is not None and price_id in self.price_ids) or (
            PRICE_LOOKUP_KEY in self.lookup_keys
        )


def invoice_subscription_id(invoice: Mapping[str, Any]) -> str | None:
    """The subscription an invoice bills: `parent.subscription_details.subscription` since
    2025-03-31, the top-level `subscription` before."""
    parent = invoice.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, Mapping) else None
    if not isinstance(details, Mapping):
        details = {}
    return stripe_id(details.get("subscription")) or stripe_id(invoice.get("subscription"))


# --- locks and upserts -------------------------------------------------------------------


INSERTS: dict[str, Any] = {"postgresql": pg_insert, "sqlite": sqlite_insert}


def insert_for(session: Session) -> Any:
    return INSERTS[session.get_bind().dialect.name]


def _advisory_key(name: str) -> int:
    return int.from_bytes(
        hashlib.sha256(b"bsd-billing:" + name.encode()).digest()[:8], "big", signed=True
    )


def lock(session: Session, name: str) -> None:
    """Serialize work on one Stripe object until this transaction ends.

    PostgreSQL: a transaction-scoped advisory lock. SQLite: its one write lock, taken by a
    write that changes nothing (SQLite has no row locks). Call it first in a transaction:
    on SQLite a transaction that has read cannot take the write lock once another writer
    has committed."""
    connection = session.connection()
    if connection.dialect.name == "postgresql":
        connection.execute(_ADVISORY_LOCK, {"k": _advisory_key(name)})
    else:
        connection.execute(_TAKE_WRITE_LOCK)


_ADVISORY_LOCK = text("SELECT pg_advisory_xact_lock(:k)")
_TAKE_WRITE_LOCK = (
    update(BillingSubscription.__table__)
    .where(BillingSubscription.__table__.c.id < 0)
    .values(status="")
)


# --- customers ---------------------------------------------------------------------------


def match_customer(session: Session, customer: Mapping[str, Any]) -> int | None:
    """INTERFACE.md's rule after the stored id: `metadata.reader_id`, else the email when
    exactly one reader has it."""
    raw = (customer.get("metadata") or {}).get("reader_id")
    reader_id = _metadata_id(raw)
    if reader_id is not None and session.get(Reader, reader_id) is not None:
        return reader_id
    email = customer.get("email")
    if isinstance(email, str) and email.strip():
        ids = session.scalars(
            select(Reader.id).where(Reader.email_key == email.strip().lower()).limit(2)
        ).all()
        if len(ids) == 1:
            return ids[0]
    return None


def _store_customer(
    session: Session, reader_id: int, customer_id: str, email: str | None
) -> BillingCustomer:
    session.execute(
        insert_for(session)(BillingCustomer)
        .values(
            reader_id=reader_id, stripe_customer_id=customer_id, email=email, created_at=utcnow()
        )
        .on_conflict_do_nothing(index_elements=["stripe_customer_id"])
    )
    row = session.scalar(
        select(BillingCustomer)
        .where(BillingCustomer.stripe_customer_id == customer_id)
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


CUSTOMER_READER = DriverStatement(
    select(BillingCustomer.__table__.c.reader_id).where(
        BillingCustomer.__table__.c.stripe_customer_id == bindparam("customer_id")
    )
)


def reader_for_customer(session: Session, gw: StripeGateway, customer_id: str) -> int | None:
    """The reader a Stripe customer belongs to, remembering a new match."""
    stored = CUSTOMER_READER.scalar(session.connection(), {"customer_id": customer_id})
    if stored is not None:
        return stored
    try:
        customer = gw.retrieve_customer(customer_id)
    except stripe.StripeError as exc:
        if is_not_found(exc):
            return None
        raise
    if customer.get("deleted"):
        return None
    reader_id = match_customer(session, customer)
    if reader_id is not None:
        _store_customer(session, reader_id, customer_id, customer.get("email"))
    return reader_id


def current_customer(session: Session, reader: Reader) -> BillingCustomer | None:
    return session.scalar(
        select(BillingCustomer)
        .where(BillingCustomer.reader_id == reader.id, BillingCustomer.deleted_at.is_(None))
        .order_by(BillingCustomer.id.desc())
        .limit(1)
    )


def ensure_customer(session: Session, gw: StripeGateway, reader: Reader) -> BillingCustomer:
    """The reader's Stripe customer, made (with `metadata.reader_id`) on first need."""
    existing = current_customer(session, reader)
    if existing is not None:
        return existing
    made_before = session.scalar(
        select(func.count())
        .select_from(BillingCustomer)
        .where(BillingCustomer.reader_id == reader.id)
    )
    # The idempotency key makes a retried or doubled request reuse one customer.
    customer = gw.create_customer(
        email=reader.email,
        reader_id=reader.id,
        idempotency_key=f"bsd-customer-{reader.id}-{made_before}",
    )
    return _store_customer(session, reader.id, customer["id"], customer.get("email"))


def refresh_customer(session: Session, gw: StripeGateway, customer_id: str) -> str:
    """`customer.updated` / `customer.deleted`: re-read and keep email and deletion."""
    row = session.scalar(
        select(BillingCustomer).where(BillingCustomer.stripe_customer_id == customer_id)
    )
    if row is None:
        return "ignored: unknown customer"
    try:
        customer = gw.retrieve_customer(customer_id)
    except stripe.StripeError as exc:
        if not is_not_found(exc):
            raise
        customer = {"id": customer_id, "deleted": True}
    if customer.get("deleted"):
        if row.deleted_at is None:
            row.deleted_at = utcnow()
            row.checkout_session_id = None
        session.flush()
        return "customer deleted"
    row.email = customer.get("email")
    row.deleted_at = None
    session.flush()
    return "customer updated"


# --- subscriptions -----------------------------------------------------------------------


def _metadata_id(raw: Any) -> int | None:
    """An id from Stripe metadata (text we set, or anyone with dashboard access typed):
    a row id only when the database's integer columns can hold it."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        raw = str(raw)
    if not isinstance(raw, str):
        return None
    try:
        return parse_id(raw)
    except InvalidInput:
        return None


def _existing_id(session: Session, model: type[Story] | type[Edition], raw: Any) -> int | None:
    row_id = _metadata_id(raw)
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


SUBSCRIPTIONS = BillingSubscription.__table__
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
    dialect: insert_(SUBSCRIPTIONS)
    .values({c: bindparam(c.key, type_=c.type) for c in _WRITABLE})
    .on_conflict_do_nothing(index_elements=["stripe_subscription_id"])
    .returning(SUBSCRIPTIONS.c.id)
    for dialect, insert_ in INSERTS.items()
}
_STORE_SUBSCRIPTION = DriverStatement(
    _INSERT_SUBSCRIPTION["postgresql"], elsewhere=_INSERT_SUBSCRIPTION["sqlite"]
)
_UPDATE = update(SUBSCRIPTIONS).values({c: bindparam(c.key, type_=c.type) for c in _WRITABLE})
_UPDATE_SUBSCRIPTION = DriverStatement(_UPDATE.where(SUBSCRIPTIONS.c.id == bindparam("row_id")))
# The row read without a lock, written only if no other write came in between (every
# write sets `synced_at`, to the time of its read of Stripe): see `unlocked_update`.
UPDATE_UNLESS_CHANGED = _UPDATE.where(
    SUBSCRIPTIONS.c.id == bindparam("row_id"),
    SUBSCRIPTIONS.c.synced_at == bindparam("was_synced_at", type_=SUBSCRIPTIONS.c.synced_at.type),
).returning(SUBSCRIPTIONS.c.id)


@dataclass(frozen=True)
class Locked:
    """A subscription's row as the caller's transaction has locked it (None: not stored),
    and (customer id, reader) when the caller also found the reader stored for the
    fetched subscription's customer."""

    row: BillingSubscription | None
    known_reader: tuple[str, int] | None = None


class _StoredMeanwhile(Exception):
    """Another transaction stored the subscription after this one found no row."""


def lock_subscription(session: Session, subscription_id: str) -> BillingSubscription | None:
    """Lock one subscription until the transaction ends; a snapshot of its row, if any.

    PostgreSQL: the row lock (SELECT … FOR UPDATE). A subscription not stored yet has no
    row to lock: its first sync claims it by inserting it (`_write`), and of two first
    syncs at once, the second's insert waits for the first's transaction, finds the row
    and syncs again over it (`sync_subscription`). SQLite: the database's write lock.

    The snapshot is a detached `BillingSubscription`; `apply_subscription` writes it back
    with one Core statement. Webhooks run this for nearly every event, and the ORM's unit
    of work costs more here than the statements themselves."""
    connection = session.connection()
    if connection.dialect.name != "postgresql":
        lock(session, f"subscription:{subscription_id}")
    found = _LOCK_SUBSCRIPTION.mapping(connection, {"sid": subscription_id})
    return BillingSubscription(**found) if found is not None else None


def _store_with_funnel() -> DriverStatement:
    """PostgreSQL: a new subscription and its funnel events (one or two: trial started,
    paid) in one statement; the events only if the subscription was inserted."""
    stored = _INSERT_SUBSCRIPTION["postgresql"].cte("stored")
    events = Event.__table__
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


def _row_values(row: BillingSubscription) -> dict[str, Any]:
    """The row's values for the insert and updates above (every column but `id`)."""
    return {c.key: getattr(row, c.key) for c in _WRITABLE}


def _write(session: Session, row: BillingSubscription, funnel: list[dict[str, Any]]) -> None:
    """Store the row, then its funnel events. A new row claims the subscription (see
    `_INSERT_SUBSCRIPTION`); on PostgreSQL it and its events are one statement."""
    values_ = _row_values(row)
    connection = session.connection()
    if row.id is not None:
        _UPDATE_SUBSCRIPTION.execute(connection, {**values_, "row_id": row.id})
    elif funnel and connection.dialect.name == "postgresql" and len(funnel) <= 2:
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
        connection.execute(insert(Event.__table__), funnel)


def apply_subscription(
    session: Session,
    gw: StripeGateway,
    obj: Mapping[str, Any],
    *,
    row: BillingSubscription | None,
    fetched_at: datetime,
    known_reader: tuple[str, int] | None = None,
) -> BillingSubscription | None:
    """Write a subscription as read from Stripe at `fetched_at` over its `row` (from
    `lock_subscription`, so nobody else writes it meanwhile).

    Ignored (None): another product's subscription we never had, or a customer no reader
    matches. A row synced after `fetched_at` is fresher than `obj` and is left alone."""
    data = SubscriptionData.from_stripe(obj)
    ours = data.for_price(current_app.config.get("STRIPE_PRICE_ID"))
    if row is None and not ours:
        return None
    if row is not None and row.synced_at > fetched_at:
        return row
    if row is not None and row.stripe_customer_id == data.customer_id:
        reader_id: int | None = row.reader_id  # matched before; the stored match wins
    elif known_reader is not None and known_reader[0] == data.customer_id:
        reader_id = known_reader[1]  # the customer's stored reader, read by the caller
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
            created_at=fetched_at,
            trial_recorded_at=None,
            paid_recorded_at=None,
            past_due_since=None,
            payment_failure_invoice_id=None,
        )
    steps = _set_fields(row, data, ours, reader_id, fetched_at)
    _write(session, row, _funnel_rows(session, row, data, steps))
    if row.status in PAYMENT_PROBLEM:
        # Stripe's state says a payment failed: tell the reader once, whether or not the
        # invoice.payment_failed event arrives (localstripe, for one, never sends it).
        notify_failed_invoice(session, gw, row, data.latest_invoice_id)
    return row


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


def unlocked_update(
    row: BillingSubscription, obj: Mapping[str, Any], fetched_at: datetime
) -> dict[str, Any] | None:
    """What `apply_subscription` would write over a stored `row` (read without a lock) for
    `obj`, read from Stripe at `fetched_at`, when that write is all it would do: the
    row's values, with `row_id` and `was_synced_at` for a write that only goes ahead
    while the row is still as read (`billing.events`). None when it needs the locked
    way: a fresher row, another customer, a funnel step or a payment problem to tell."""
    data = SubscriptionData.from_stripe(obj)
    if row.synced_at > fetched_at or row.stripe_customer_id != data.customer_id:
        return None
    was_synced_at = row.synced_at
    ours = data.for_price(current_app.config.get("STRIPE_PRICE_ID"))
    if _set_fields(row, data, ours, row.reader_id, fetched_at) or row.status in PAYMENT_PROBLEM:
        return None
    values_ = _row_values(row)
    return {**values_, "row_id": row.id, "was_synced_at": was_synced_at}


@dataclass(frozen=True)
class Fetched:
    """A subscription as Stripe's API returned it (None: Stripe has no such subscription)
    and when the request went out: rows synced later than `at` are fresher than it."""

    obj: dict[str, Any] | None
    at: datetime


def fetch_subscription(gw: StripeGateway, subscription_id: str) -> Fetched:
    at = utcnow()
    try:
        return Fetched(gw.retrieve_subscription(subscription_id), at)
    except stripe.StripeError as exc:
        if is_not_found(exc):
            return Fetched(None, at)
        raise


def sync_subscription(
    session: Session,
    gw: StripeGateway,
    subscription_id: str,
    *,
    fetched: Fetched | None = None,
    locked: Locked | None = None,
) -> BillingSubscription | None:
    """Re-read one subscription from Stripe and store it: the only way a subscription
    changes here, whoever asks (webhook, return from Checkout, reconciliation).

    Stripe is read first (or `fetched` was, by a caller that read it earlier, and may
    have `locked` the row since), so no lock is held while waiting on Stripe;
    `apply_subscription` then keeps whichever read is newer, this one or what another
    sync stored meanwhile."""
    fetched = fetched or fetch_subscription(gw, subscription_id)
    if fetched.obj is None:
        log.warning("subscription %s: not found at Stripe", subscription_id)
        return None
    for attempt in range(3):  # a second try finds the row; a third only if it was deleted
        first = locked if locked is not None and not attempt else None
        row = first.row if first else lock_subscription(session, subscription_id)
        try:
            return apply_subscription(
                session,
                gw,
                fetched.obj,
                row=row,
                fetched_at=fetched.at,
                known_reader=first.known_reader if first else None,
            )
        except _StoredMeanwhile:
            continue  # the row is there now (committed): lock it and sync over it
    raise RuntimeError(f"subscription {subscription_id} kept changing while it was stored")


# --- checkout and portal -----------------------------------------------------------------


@dataclass(frozen=True)
class CheckoutOrigin:
    """Where a trial came from, for the staff funnel."""

    story_id: int | None = None
    edition_id: int | None = None


def _plan_now(session: Session, reader_id: int) -> Plan:
    subs = session.scalars(
        select(BillingSubscription)
        .where(
            BillingSubscription.reader_id == reader_id,
            BillingSubscription.status.in_(LIVE_STATUSES),
        )
        .execution_options(populate_existing=True)
    )
    return best(subs, utcnow())[0]


def _settle_previous_checkout(
    session: Session, gw: StripeGateway, customer: BillingCustomer
) -> None:
    """A reader may start checkout again (another tab, back button): close the earlier
    session so at most one trial offer is open, and pick up one already paid for."""
    previous = customer.checkout_session_id
    if not previous:
        return
    try:
        old = gw.retrieve_checkout_session(previous)
        if old.get("status") == "open":
            gw.expire_checkout_session(previous)
        elif old.get("status") == "complete" and stripe_id(old.get("subscription")):
            sync_subscription(session, gw, stripe_id(old.get("subscription")))  # type: ignore[arg-type]
    except stripe.StripeError as exc:
        # Already expired or completed in between: nothing left to close.
        log.info("previous checkout session %s: %s", previous, exc)
    customer.checkout_session_id = None


def start_checkout(
    session: Session,
    gw: StripeGateway,
    reader: Reader,
    *,
    origin: CheckoutOrigin,
    cancel_url: str,
) -> str:
    """A Checkout Session for the plan, with the free trial for a reader who never had
    one. Returns the URL to send the reader to."""
    cfg = current_app.config
    lock(session, f"reader:{reader.id}")  # one checkout per reader at a time
    if _plan_now(session, reader.id) != Plan.FREE:
        raise AlreadySubscribed("Your plan is already running: manage it from your account.")
    customer = ensure_customer(session, gw, reader)
    _settle_previous_checkout(session, gw, customer)
    if _plan_now(session, reader.id) != Plan.FREE:
        session.flush()
        raise AlreadySubscribed("Your plan is already running: manage it from your account.")
    metadata = {"reader_id": str(reader.id)}
    if origin.story_id is not None:
        metadata["story_id"] = str(origin.story_id)
    if origin.edition_id is not None:
        metadata["edition_id"] = str(origin.edition_id)
    subscription_data: dict[str, Any] = {"metadata": metadata}
    trial_days = int(cfg["TRIAL_DAYS"])
    if trial_days > 0 and not had_trial(session, reader.id):
        subscription_data["trial_period_days"] = trial_days
    checkout = gw.create_checkout_session(
        {
            "mode": "subscription",
            "customer": customer.stripe_customer_id,
            "client_reference_id": str(reader.id),
            "line_items": [{"price": cfg["STRIPE_PRICE_ID"], "quantity": 1}],
            "subscription_data": subscription_data,
            "metadata": metadata,
            # Stripe fills in {CHECKOUT_SESSION_ID} itself.
            "success_url": f"{cfg['BASE_URL']}/billing/return?session_id={{CHECKOUT_SESSION_ID}}",
            "cancel_url": cancel_url,
        }
    )
    customer.checkout_session_id = checkout["id"]
    session.flush()
    return str(checkout["url"])


@dataclass(frozen=True)
class CheckoutResult:
    status: str  # Stripe's: open, complete, expired
    subscription: BillingSubscription | None


def complete_checkout(
    session: Session, gw: StripeGateway, reader: Reader, checkout_session_id: str
) -> CheckoutResult:
    """`/billing/return`: sync what the Checkout Session made, as the webhook would (both
    may run at once; the subscription lock orders them and either result is the same).

    NotFound for someone else's checkout; the caller then rolls back what was synced."""
    try:
        checkout = gw.retrieve_checkout_session(checkout_session_id)
    except stripe.StripeError as exc:
        if is_not_found(exc):
            raise NotFound("We couldn't find that checkout.") from exc
        raise
    subscription_id = stripe_id(checkout.get("subscription"))
    row = None
    if subscription_id:
        row = sync_subscription(session, gw, subscription_id)
    # Checked after the sync, whose lock comes first in the transaction (see `lock`).
    mine = checkout.get("client_reference_id") == str(reader.id)
    customer_id = stripe_id(checkout.get("customer"))
    if not mine and customer_id:
        owner = CUSTOMER_READER.scalar(session.connection(), {"customer_id": customer_id})
        mine = owner == reader.id
    if not mine:
        raise NotFound("We couldn't find that checkout.")
    return CheckoutResult(status=str(checkout.get("status") or ""), subscription=row)


def portal_url(session: Session, gw: StripeGateway, reader: Reader, return_url: str) -> str:
    customer = current_customer(session, reader)
    if customer is None:
        raise NoBillingAccount("You have no billing account yet: start a plan first.")
    portal = gw.create_portal_session(customer=customer.stripe_customer_id, return_url=return_url)
    return str(portal["url"])


# --- emails ------------------------------------------------------------------------------


def local_date(moment: datetime, timezone: str) -> str:
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local:%B} {local.day}, {local.year}"


def notify_trial_will_end(session: Session, row: BillingSubscription) -> bool:
    # Billing mail is transactional: it goes after an unsubscribe from the daily email
    # too, but never to a suppressed address (`email_reader` decides).
    reader = session.get(Reader, row.reader_id)
    if reader is None or row.trial_end is None:
        return False
    cfg = current_app.config
    return email_reader(
        session,
        reader,
        "trial_will_end",
        {
            "trial_end": local_date(row.trial_end, reader.timezone),
            "price": cfg.get("PRICE_LABEL", "$5/month"),
            "renews": not (row.cancel_at_period_end or row.cancel_at),
            "account_url": f"{cfg['BASE_URL']}/account",
        },
    )


def notify_payment_failed(session: Session, reader_id: int, invoice: Mapping[str, Any]) -> bool:
    reader = session.get(Reader, reader_id)
    if reader is None:
        return False
    cfg = current_app.config
    account_url = f"{cfg['BASE_URL']}/account"
    amount = invoice.get("amount_due")
    currency = str(invoice.get("currency") or "usd").upper()
    return email_reader(
        session,
        reader,
        "payment_failed",
        {
            "amount": f"{amount / 100:.2f} {currency}" if isinstance(amount, int) else None,
            "fix_url": invoice.get("hosted_invoice_url") or account_url,
            "account_url": account_url,
            "grace_days": int(cfg.get("BILLING_GRACE_DAYS", 3)),
        },
    )


PAYMENT_PROBLEM = ("past_due", "incomplete", "unpaid")


def payment_failed(invoice: Mapping[str, Any]) -> bool:
    """Charged and not paid: the reader has something to fix."""
    return invoice.get("status") == "open" and bool(
        invoice.get("attempted") or (invoice.get("attempt_count") or 0) > 0
    )


def notify_failed_invoice(
    session: Session,
    gw: StripeGateway,
    row: BillingSubscription,
    invoice_id: str | None,
) -> str:
    """Email the reader about a failed invoice, once per invoice. Returns what happened."""
    if not row.our_price or not invoice_id:
        return "no email: no invoice"
    if invoice_id == row.payment_failure_invoice_id:
        return "no email: already told"
    try:
        invoice = gw.retrieve_invoice(invoice_id)
    except stripe.StripeError as exc:
        if is_not_found(exc):
            return "no email: invoice not found"
        raise
    if not payment_failed(invoice):
        # Paid or voided since (events can arrive late): nothing for the reader to fix.
        return f"no email: invoice is {invoice.get('status')}"
    row.payment_failure_invoice_id = invoice_id
    session.execute(
        update(SUBSCRIPTIONS)
        .where(SUBSCRIPTIONS.c.id == row.id)
        .values(payment_failure_invoice_id=invoice_id)
    )
    if notify_payment_failed(session, row.reader_id, invoice):
        return "emailed: payment failed"
    return "no email: address refuses mail"


# --- reconciliation ----------------------------------------------------------------------


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
    """Re-sync every live subscription from Stripe, so a missed webhook heals by itself.

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
            _reconcile_one(db, gw, report, data.id, Fetched(obj, fetched_at))
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
        cutoff = (now or utcnow()) - EVENT_RETENTION
        result = session.execute(delete(StripeEvent).where(StripeEvent.received_at < cutoff))
        report.pruned_events = result.rowcount or 0  # type: ignore[attr-defined]
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
