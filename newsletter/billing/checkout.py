"""Starting a plan: Stripe Checkout, the return from it, and the customer portal.

`start_checkout` holds the reader's lock (`locking.lock`) while it calls Stripe, on
purpose: it is what makes one checkout per reader at a time. No subscription row is
locked meanwhile."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import stripe
from flask import current_app
from sqlalchemy.orm import Session

from newsletter import metrics
from newsletter.billing.customers import current_customer, ensure_customer, stored_reader
from newsletter.billing.entitlement import Plan, had_trial, plan_of
from newsletter.billing.gateway import StripeGateway, is_not_found
from newsletter.billing.locking import lock
from newsletter.billing.models import BillingCustomer, BillingSubscription
from newsletter.billing.stripe_objects import stripe_id
from newsletter.billing.subscriptions import sync_subscription
from newsletter.errors import NewsletterError, NotFound
from newsletter.readers.models import Reader

log = logging.getLogger(__name__)


class AlreadySubscribed(NewsletterError):
    """Checkout asked for by a reader whose trial or paid plan is running."""


class NoBillingAccount(NewsletterError):
    """The portal asked for by a reader Stripe has never heard of."""


@dataclass(frozen=True)
class CheckoutOrigin:
    """Where a trial came from, for the staff funnel."""

    story_id: int | None = None
    edition_id: int | None = None


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
        subscription_id = stripe_id(old.get("subscription"))
        if old.get("status") == "open":
            gw.expire_checkout_session(previous)
        elif old.get("status") == "complete" and subscription_id:
            sync_subscription(session, gw, subscription_id)
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
    if plan_of(session, reader.id) != Plan.FREE:
        raise AlreadySubscribed("Your plan is already running: manage it from your account.")
    customer = ensure_customer(session, gw, reader)
    _settle_previous_checkout(session, gw, customer)
    if plan_of(session, reader.id) != Plan.FREE:
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
    metrics.CHECKOUTS_STARTED.inc()
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
        mine = stored_reader(session, customer_id) == reader.id
    if not mine:
        raise NotFound("We couldn't find that checkout.")
    return CheckoutResult(status=str(checkout.get("status") or ""), subscription=row)


def portal_url(session: Session, gw: StripeGateway, reader: Reader, return_url: str) -> str:
    customer = current_customer(session, reader)
    if customer is None:
        raise NoBillingAccount("You have no billing account yet: start a plan first.")
    portal = gw.create_portal_session(customer=customer.stripe_customer_id, return_url=return_url)
    return str(portal["url"])
