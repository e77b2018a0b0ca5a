"""Reading Stripe's payloads: events, subscriptions, invoices and metadata, as plain
values. Nothing here touches the database or calls Stripe."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from newsletter.billing.gateway import PRICE_LOOKUP_KEY
from newsletter.errors import InvalidInput
from newsletter.inputs import parse_id

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


def event_created(event: Mapping[str, Any]) -> datetime | None:
    created = event.get("created")
    return datetime.fromtimestamp(created, UTC) if isinstance(created, int) else None


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if isinstance(value, int | float) else None


def stripe_id(value: Any) -> str | None:
    """An id from a field that may be expanded into an object."""
    if isinstance(value, Mapping):
        value = value.get("id")
    return value if isinstance(value, str) and value else None


def payload_id(value: Any) -> str | None:
    """An id from an event's object (maybe expanded), if it looks like Stripe's: a
    malformed one is no id, and its event is ignored."""
    found = stripe_id(value)
    return found if found is not None and _STRIPE_ID.fullmatch(found) else None


def metadata_id(raw: Any) -> int | None:
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


# Subscription statuses that mean a payment failed: the reader has something to fix.
PAYMENT_PROBLEM = ("past_due", "incomplete", "unpaid")


def problem_invoice_id(subscription: Mapping[str, Any]) -> str | None:
    """The latest invoice of a subscription whose status says a payment failed."""
    if subscription.get("status") not in PAYMENT_PROBLEM:
        return None
    return stripe_id(subscription.get("latest_invoice"))


def invoice_subscription_id(invoice: Mapping[str, Any]) -> str | None:
    """The subscription an invoice bills: `parent.subscription_details.subscription` since
    2025-03-31, the top-level `subscription` before."""
    parent = invoice.get("parent")
    details = parent.get("subscription_details") if isinstance(parent, Mapping) else None
    if not isinstance(details, Mapping):
        details = {}
    return stripe_id(details.get("subscription")) or stripe_id(invoice.get("subscription"))


def payment_failed(invoice: Mapping[str, Any]) -> bool:
    """Charged and not paid: the reader has something to fix."""
    return invoice.get("status") == "open" and bool(
        invoice.get("attempted") or (invoice.get("attempt_count") or 0) > 0
    )
