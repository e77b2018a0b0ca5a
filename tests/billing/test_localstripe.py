"""Against localstripe, a real Stripe peer: subscriptions made and cancelled by API calls
reach the app as real signed webhooks over HTTP, and change the reader's plan.

localstripe keeps one store for the whole session and sends every event to the webhook
registered last, so each test uses its own addresses: an event still in flight from an
earlier test then matches no reader and is ignored.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
import stripe
from sqlalchemy import select

from newsletter.billing.entitlement import Plan, plan_of
from newsletter.billing.models import BillingSubscription
from tests.billing.conftest import SECRET, LocalStripe, make_reader, wait_until

PLAN_ID = "price_localstripe_bsd_monthly"
GOOD_CARD = "4242424242424242"
DECLINED_ON_CHARGE = "4000000000000341"  # attaches, then every charge fails


@pytest.fixture(scope="session")
def stripe_peer(localstripe: LocalStripe) -> stripe.StripeClient:
    client = stripe.StripeClient("sk_test_localstripe", base_addresses={"api": localstripe.url})
    product = client.v1.products.create(params={"name": "Both Sides Daily"})
    client.v1.plans.create(
        params={
            "id": PLAN_ID,
            "product": product.id,
            "amount": 500,
            "currency": "usd",
            "interval": "month",
        }
    )
    return client


@pytest.fixture
def app_settings(localstripe: LocalStripe, stripe_peer: stripe.StripeClient) -> dict[str, Any]:
    return {
        "STRIPE_SECRET_KEY": "sk_test_localstripe",
        "STRIPE_API_BASE": localstripe.url,
        "STRIPE_PRICE_ID": PLAN_ID,
        "STRIPE_WEBHOOK_SECRET": SECRET,
    }


@pytest.fixture
def served(live_server, localstripe: LocalStripe) -> Iterator[Any]:  # type: ignore[no-untyped-def]
    localstripe.register_webhook("app", f"{live_server.url}/webhooks/stripe", SECRET)
    yield live_server


def customer_with_card(client: stripe.StripeClient, email: str, card: str) -> str:
    # Made by hand, as in Stripe's dashboard: matched to the reader by email.
    customer = client.v1.customers.create(params={"email": email})
    pm = client.v1.payment_methods.create(
        params={
            "type": "card",
            "card": {"number": card, "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    )
    client.v1.payment_methods.attach(pm.id, params={"customer": customer.id})
    client.v1.customers.update(
        customer.id, params={"invoice_settings": {"default_payment_method": pm.id}}
    )
    return customer.id


def plan_now(served, reader_id: int, now=None) -> Plan:  # type: ignore[no-untyped-def]
    with served.app.app_context(), served.app.extensions["db"].session() as s:
        return plan_of(s, reader_id, now)


def new_reader(served) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    email = f"reader-{secrets.token_hex(4)}@example.com"
    with served.app.extensions["db"].session() as s:
        return make_reader(s, email).id, email


def test_a_subscription_created_then_cancelled_by_api_calls(served, stripe_peer):
    reader_id, email = new_reader(served)
    customer = customer_with_card(stripe_peer, email, GOOD_CARD)
    sub = stripe_peer.v1.subscriptions.create(
        params={"customer": customer, "items": [{"plan": PLAN_ID}]}
    )
    assert sub.status == "active"
    wait_until(lambda: plan_now(served, reader_id) == Plan.PAID)
    stripe_peer.v1.subscriptions.cancel(sub.id)
    wait_until(lambda: plan_now(served, reader_id) == Plan.FREE)
    with served.app.extensions["db"].session() as s:
        row = s.scalar(
            select(BillingSubscription).where(BillingSubscription.stripe_subscription_id == sub.id)
        )
        assert (row.status, row.reader_id, row.price_id) == ("canceled", reader_id, PLAN_ID)


def test_a_card_declined_on_the_first_charge(served, stripe_peer, smtp):
    reader_id, email = new_reader(served)
    customer = customer_with_card(stripe_peer, email, DECLINED_ON_CHARGE)
    sub = stripe_peer.v1.subscriptions.create(
        params={"customer": customer, "items": [{"plan": PLAN_ID}]}
    )
    assert sub.status == "incomplete"
    [message] = smtp.wait_for(email, timeout=15)
    assert message["Subject"] == "We couldn't take your Both Sides Daily payment"
    text = message.get_body(("plain",)).get_content()
    assert f"{served.url}/account" in text  # localstripe has no hosted invoice page
    assert plan_now(served, reader_id) == Plan.FREE
