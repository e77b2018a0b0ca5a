"""The one function that says what plan a reader is on.

Everything that depends on the plan asks here: the meter, the account page, `/api/me`,
and which edition variant a reader gets. The plan comes from the reader's Stripe
subscriptions as last read from Stripe (`newsletter.billing.models`):

- `trialing` → trial; `active` → paid, also when it is set to cancel, until it ends;
- `past_due` → still paid for `BILLING_GRACE_DAYS` (card trouble should not cut a
  paying reader off at once), then free;
- `unpaid`, `canceled`, `incomplete`, `incomplete_expired`, `paused`, anything else → free.

A reader with several subscriptions gets the best plan among them.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import NamedTuple, Protocol

from flask import current_app, has_app_context
from sqlalchemy import ColumnElement, Connection, bindparam, exists, literal_column, select
from sqlalchemy.orm import Session

from newsletter.billing.models import BillingCustomer, BillingSubscription
from newsletter.db import utcnow
from newsletter.readers.models import Reader

DEFAULT_GRACE_DAYS = 3
# Statuses that can entitle a reader: the only rows the hot paths need to load.
LIVE_STATUSES = ("trialing", "active", "past_due")


class Plan(StrEnum):
    FREE = "free"
    TRIAL = "trial"
    PAID = "paid"


_RANK = {Plan.FREE: 0, Plan.TRIAL: 1, Plan.PAID: 2}


def grace_period() -> timedelta:
    days = DEFAULT_GRACE_DAYS
    if has_app_context():
        days = int(current_app.config.get("BILLING_GRACE_DAYS", DEFAULT_GRACE_DAYS))
    return timedelta(days=days)


class SubscriptionState(Protocol):
    """What the rule reads: a `BillingSubscription`, or a row of the columns below."""

    reader_id: int
    our_price: bool
    status: str
    trial_end: datetime | None
    current_period_end: datetime | None
    cancel_at_period_end: bool
    cancel_at: datetime | None
    past_due_since: datetime | None


def scheduled_end(sub: SubscriptionState) -> datetime | None:
    """When a subscription set to cancel stops, or None when it renews."""
    if sub.cancel_at is not None:
        return sub.cancel_at
    if sub.cancel_at_period_end:
        return sub.current_period_end
    return None


def plan_for(sub: SubscriptionState, now: datetime, grace: timedelta | None = None) -> Plan:
    """The entitlement rule for one subscription."""
    if not sub.our_price:
        return Plan.FREE
    end = scheduled_end(sub)
    if end is not None and now >= end:
        # Stripe ends it at `end`; until its webhook arrives the reader is already free.
        return Plan.FREE
    match sub.status:
        case "trialing":
            return Plan.TRIAL
        case "active":
            return Plan.PAID
        case "past_due":
            since = sub.past_due_since or now
            return Plan.PAID if now < since + (grace or grace_period()) else Plan.FREE
        case _:
            return Plan.FREE


def best(subs: Iterable[SubscriptionState], now: datetime) -> tuple[Plan, SubscriptionState | None]:
    """The best plan among a reader's subscriptions, and the subscription giving it."""
    grace = grace_period()
    chosen: tuple[Plan, SubscriptionState | None] = (Plan.FREE, None)
    for sub in subs:
        plan = plan_for(sub, now, grace)
        if _RANK[plan] > _RANK[chosen[0]]:
            chosen = (plan, sub)
    return chosen


_S = BillingSubscription.__table__
# The columns the rule reads (`SubscriptionState`).
_STATE_COLUMNS = (
    "our_price", "status", "trial_end", "current_period_end", "cancel_at_period_end",
    "cancel_at", "past_due_since",
)  # fmt: skip
# Which rows can entitle anyone: `plan_for` gives FREE to every other row. The statuses as
# literals (our constants): a list would be a parameter expanded anew at every execution,
# which costs the read confirmation more than its query does.
_LIVE = _S.c.status.in_([literal_column(f"'{s}'") for s in LIVE_STATUSES]) & (
    _S.c.our_price.is_(True)
)
_STATE = select(_S.c.reader_id, *(_S.c[name] for name in _STATE_COLUMNS)).where(_LIVE)
# Built once: a story page asks for every view, the send loop for every batch. Plain
# rows, not entities: the rule only reads them.
_LIVE_OF_ONE = _STATE.where(_S.c.reader_id == bindparam("reader_id"))
_LIVE_OF_MANY = _STATE.where(_S.c.reader_id.in_(bindparam("reader_ids", expanding=True)))


def certainly_free(reader_id: ColumnElement[int]) -> ColumnElement[bool]:
    """SQL, true when the reader has no subscription that could entitle them, so that
    `plan_of` says FREE without reading further: for a statement that must decide in
    one round trip (the meter's charge). False says nothing: ask `plan_of`."""
    return ~select(_S.c.id).where(_S.c.reader_id == reader_id, _LIVE).exists()


def _connection(db: Session | Connection) -> Connection:
    return db.connection() if isinstance(db, Session) else db


def _live_subscriptions(db: Session | Connection, reader_id: int) -> Sequence[SubscriptionState]:
    rows = _connection(db).execute(_LIVE_OF_ONE, {"reader_id": reader_id}).all()
    return rows  # type: ignore[return-value]


def plan_of(db: Session | Connection, reader_id: int, now: datetime | None = None) -> Plan:
    """The reader's plan now (or at `now`): the best among their subscriptions."""
    return best(_live_subscriptions(db, reader_id), now or utcnow())[0]


class Entitlement(NamedTuple):
    plan: Plan
    trial_end: datetime | None  # on a trial: when it ends, as Stripe last said; else None


def _entitlement(subs: Iterable[SubscriptionState], now: datetime) -> Entitlement:
    plan, sub = best(subs, now)
    return Entitlement(plan, sub.trial_end if plan == Plan.TRIAL and sub is not None else None)


def entitlements_of(
    session: Session, reader_ids: Sequence[int], now: datetime
) -> dict[int, Entitlement]:
    """Plan and trial end for many readers in one query per 1,000 (the send loop's
    per-batch need): `plan_of` and `trial_ends_at` at once."""
    by_reader: dict[int, list[SubscriptionState]] = {}
    ids = list(reader_ids)
    connection = session.connection()
    for chunk in range(0, len(ids), 1000):
        rows = connection.execute(_LIVE_OF_MANY, {"reader_ids": ids[chunk : chunk + 1000]})
        for sub in rows:
            by_reader.setdefault(sub.reader_id, []).append(sub)  # type: ignore[arg-type]
    return {rid: _entitlement(by_reader.get(rid, ()), now) for rid in ids}


def plans_of(session: Session, reader_ids: Sequence[int], now: datetime) -> dict[int, Plan]:
    """`plan_of` for many readers in one query per 1,000 (the ledger's per-chunk need)."""
    found = entitlements_of(session, reader_ids, now)
    return {rid: entitlement.plan for rid, entitlement in found.items()}


def trial_ends_at(session: Session, reader_id: int) -> datetime | None:
    """When the reader's trial ends, while they are on one; else None."""
    return _entitlement(_live_subscriptions(session, reader_id), utcnow()).trial_end


def trial_days_left(trial_end: datetime | None, now: datetime) -> int:
    """The days left of a trial, as the email tells a reader on it.

    The time left rounded up to whole days (6 days 2 hours left reads 7; a 7-day trial
    started just before an edition reads 7, then 6, ... and 1 on its last morning), and
    never less than 1 while the reader is on the trial: a trial whose end has passed
    but whose webhook has not arrived yet, or whose end Stripe did not give, reads 1.
    """
    if trial_end is None:
        return 1
    return max(1, math.ceil((trial_end - now).total_seconds() / 86400))


def had_trial(session: Session, reader_id: int) -> bool:
    """One trial per reader: any subscription of theirs that ever had a trial counts."""
    return bool(
        session.scalar(
            select(
                exists().where(
                    BillingSubscription.reader_id == reader_id,
                    BillingSubscription.trial_start.is_not(None)
                    | BillingSubscription.trial_end.is_not(None),
                )
            )
        )
    )


@dataclass(frozen=True)
class BillingStatus:
    """What the account page shows about billing."""

    plan: Plan
    subscription: SubscriptionState | None
    trial_ends_at: datetime | None
    renews_at: datetime | None  # next charge, when the plan renews
    cancels_at: datetime | None  # when a plan set to cancel stops
    past_due: bool  # a payment failed; the plan lasts until `grace_ends_at`
    grace_ends_at: datetime | None
    has_customer: bool  # the portal has something to show
    trial_available: bool  # checkout would include the free trial


def billing_status(session: Session, reader: Reader, now: datetime | None = None) -> BillingStatus:
    now = now or utcnow()
    plan, sub = best(_live_subscriptions(session, reader.id), now)
    has_customer = bool(
        session.scalar(
            select(
                exists().where(
                    BillingCustomer.reader_id == reader.id, BillingCustomer.deleted_at.is_(None)
                )
            )
        )
    )
    trial_end = renews = cancels = grace_end = None
    past_due = False
    if sub is not None:
        cancels = scheduled_end(sub)
        if plan == Plan.TRIAL:
            trial_end = sub.trial_end
        if cancels is None:
            renews = sub.trial_end if plan == Plan.TRIAL else sub.current_period_end
        if sub.status == "past_due":
            past_due = True
            grace_end = (sub.past_due_since or now) + grace_period()
    return BillingStatus(
        plan=plan,
        subscription=sub,
        trial_ends_at=trial_end,
        renews_at=renews,
        cancels_at=cancels,
        past_due=past_due,
        grace_ends_at=grace_end,
        has_customer=has_customer,
        trial_available=not had_trial(session, reader.id),
    )
