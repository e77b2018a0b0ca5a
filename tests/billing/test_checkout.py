"""Checkout, the return from it, the portal, the account page and `newsletter stripe setup`,
through the real stripe library against the fake Stripe API over HTTP."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import func, select

from newsletter.billing.models import BillingCustomer
from newsletter.db import utcnow
from newsletter.readers.models import Reader
from newsletter.tracking.models import Event, EventKind
from tests.billing.conftest import PRICE_ID, post_event, signed_in, subscription_row
from tests.conftest import csrf_token


def start_checkout(client, **form):  # type: ignore[no-untyped-def]
    return client.post(
        "/billing/checkout", data={"csrf_token": csrf_token(client, "/account"), **form}
    )


def session_id(response) -> str:  # type: ignore[no-untyped-def]
    return response.headers["Location"].rsplit("/", 1)[1]


def reader_id(session, email: str) -> int:  # type: ignore[no-untyped-def]
    session.rollback()
    return session.scalar(select(Reader.id).where(Reader.email_key == email))


class TestCheckout:
    def test_a_trial_checkout_then_the_return_then_the_webhook(
        self, client, session, smtp, fake_stripe
    ):
        rid = signed_in(client, session, "ann@example.com").id
        response = start_checkout(client)
        assert response.status_code == 303
        assert response.headers["Location"].startswith("https://checkout.stripe.test/c/pay/cs_")
        [customer] = fake_stripe.calls("POST", "/v1/customers")
        assert customer == {"email": "ann@example.com", "metadata": {"reader_id": str(rid)}}
        params = fake_stripe.checkout_params(session_id(response))
        assert params["mode"] == "subscription"
        assert params["client_reference_id"] == str(rid)
        assert params["line_items"] == [{"price": PRICE_ID, "quantity": "1"}]
        assert params["subscription_data"]["trial_period_days"] == "7"
        assert params["subscription_data"]["metadata"] == {"reader_id": str(rid)}
        assert params["success_url"] == (
            "http://localhost/billing/return?session_id={CHECKOUT_SESSION_ID}"
        )
        assert params["cancel_url"] == "http://localhost/account"

        # The reader starts the trial on Stripe's page and comes back before the webhook.
        sub = fake_stripe.complete_checkout(session_id(response))
        back = client.get(f"/billing/return?session_id={session_id(response)}")
        assert back.status_code == 200
        assert "Your free trial has started" in back.get_data(as_text=True)
        me = client.get("/api/me").json
        assert me["plan"] == "trial"
        assert me["trial_ends_at"].startswith((utcnow() + timedelta(days=7)).date().isoformat())
        # Then the webhook: the same state, nothing recorded twice.
        completed = fake_stripe.event(
            "checkout.session.completed", fake_stripe._get_checkout({}, session_id(response))
        )
        assert post_event(client, completed).json["outcome"] == "synced: trialing"
        session.rollback()
        assert (
            session.scalar(
                select(func.count()).select_from(Event).where(Event.kind == EventKind.TRIAL_STARTED)
            )
            == 1
        )
        assert subscription_row(session, sub["id"]).reader_id == rid
        page = client.get("/account").get_data(as_text=True)
        assert 'id="plan">Free trial<' in page and 'id="trial-end"' in page
        assert 'id="manage-billing"' in page and 'id="start-trial"' not in page

        # Checkout again while the trial runs: back to the account, no new session.
        again = start_checkout(client)
        assert again.status_code == 303 and again.headers["Location"] == "/account"
        assert len(fake_stripe.calls("POST", "/v1/checkout/sessions")) == 1

    def test_starting_twice_reuses_the_customer_and_closes_the_first_offer(
        self, client, session, smtp, fake_stripe
    ):
        signed_in(client, session, "ann@example.com")
        first = start_checkout(client)
        second = start_checkout(client)
        assert len(fake_stripe.calls("POST", "/v1/customers")) == 1
        assert fake_stripe.checkout_sessions[session_id(first)]["status"] == "expired"
        assert fake_stripe.checkout_sessions[session_id(second)]["status"] == "open"
        session.rollback()
        assert session.scalar(select(func.count()).select_from(BillingCustomer)) == 1

    def test_one_trial_per_reader(self, client, session, smtp, fake_stripe):
        rid = signed_in(client, session, "ann@example.com").id
        # A trial that ended (canceled) long ago.
        customer = fake_stripe.add_customer("ann@example.com", {"reader_id": str(rid)})
        old = fake_stripe.add_subscription(customer["id"], PRICE_ID, trial_days=7)
        post_event(
            client,
            fake_stripe.event("customer.subscription.deleted", fake_stripe.cancel(old["id"])),
        )
        assert "Subscribe for $5/month" in client.get("/account").get_data(as_text=True)
        response = start_checkout(client)
        params = fake_stripe.checkout_params(session_id(response))
        assert "trial_period_days" not in params["subscription_data"]
        assert params["customer"] == customer["id"]  # the matched customer is reused

    def test_guards(self, client, session, fake_stripe):
        # Sign-in and a form token are required.
        response = client.post("/billing/checkout", data={"csrf_token": csrf_token(client, "/")})
        assert response.status_code == 302 and "/signin" in response.headers["Location"]
        signed_in(client, session, "ann@example.com")
        assert client.post("/billing/checkout").status_code == 400  # no CSRF token
        assert client.post("/billing/portal").status_code == 400
        assert fake_stripe.requests == []
        # The return page shows only the reader's own checkout.
        other = fake_stripe.add_customer("bob@example.com")
        cs = fake_stripe._create_checkout(
            {
                "mode": "subscription",
                "customer": other["id"],
                "client_reference_id": "999",
                "line_items": [{"price": PRICE_ID}],
                "success_url": "x",
            }
        )
        assert client.get(f"/billing/return?session_id={cs['id']}").status_code == 404
        assert client.get("/billing/return?session_id=cs_test_unknown").status_code == 404
        assert client.get("/billing/return?session_id=nonsense").status_code == 400


class TestPortal:
    def test_manage_billing_opens_stripes_portal(self, client, session, smtp, fake_stripe):
        signed_in(client, session, "ann@example.com")
        token = csrf_token(client, "/account")
        # No customer yet: nothing to manage.
        response = client.post("/billing/portal", data={"csrf_token": token})
        assert response.status_code == 303 and response.headers["Location"] == "/account"
        assert "no billing account yet" in client.get("/account").get_data(as_text=True)
        start_checkout(client)
        response = client.post("/billing/portal", data={"csrf_token": token})
        assert response.status_code == 303
        assert response.headers["Location"].startswith("https://billing.stripe.test/p/session/")
        [call] = fake_stripe.calls("POST", "/v1/billing_portal/sessions")
        assert call["return_url"] == "http://localhost/account"


class TestAccountPage:
    def test_renewal_cancellation_and_past_due(self, client, session, smtp, fake_stripe):
        rid = signed_in(client, session, "ann@example.com", timezone="Europe/Paris").id
        customer = fake_stripe.add_customer("ann@example.com", {"reader_id": str(rid)})
        sub = fake_stripe.add_subscription(customer["id"], PRICE_ID, period_days=30)
        post_event(client, fake_stripe.event("customer.subscription.created", sub))
        page = client.get("/account").get_data(as_text=True)
        assert 'id="plan">Paid, $5/month<' in page
        assert re.search(r'id="renews">\w+ \d+, \d{4}, \$5/month<', page)

        fake_stripe.set(sub["id"], cancel_at_period_end=True)
        post_event(client, fake_stripe.event("customer.subscription.updated", sub))
        page = client.get("/account").get_data(as_text=True)
        assert re.search(r'id="cancels">Cancels on \w+ \d+, \d{4}<', page)
        assert 'id="renews"' not in page

        fake_stripe.set(sub["id"], cancel_at_period_end=False, status="past_due")
        post_event(client, fake_stripe.event("customer.subscription.updated", sub))
        page = client.get("/account").get_data(as_text=True)
        assert 'id="past-due"' in page and 'id="plan">Paid' in page

        fake_stripe.cancel(sub["id"])
        post_event(client, fake_stripe.event("customer.subscription.deleted", sub))
        page = client.get("/account").get_data(as_text=True)
        assert 'id="plan">Free<' in page and 'id="start-trial"' in page
        assert client.get("/api/me").json["plan"] == "free"


class TestNotConfigured:
    @pytest.fixture
    def app_settings(self):  # type: ignore[no-untyped-def]
        return {}

    def test_billing_pages_say_so_and_nothing_breaks(self, app, client, session):
        signed_in(client, session, "ann@example.com")
        account = client.get("/account")
        assert account.status_code == 200
        assert "This site has no paid plan" in account.get_data(as_text=True)
        token = csrf_token(client, "/account")
        for response in (
            client.post("/billing/checkout", data={"csrf_token": token}),
            client.post("/billing/portal", data={"csrf_token": token}),
            client.get("/billing/return?session_id=cs_test_x"),
        ):
            assert response.status_code == 404
            assert "Billing is not configured on this site yet." in response.get_data(as_text=True)
        # The plan page an old link may point at says what the site offers instead.
        start = client.get("/billing/start")
        assert start.status_code == 200 and "This site has no paid plan." in start.get_data(
            as_text=True
        )
        assert client.get("/api/me").json["plan"] == "free"
        # Webhooks: 503, so Stripe keeps the events until billing is set up.
        response = client.post("/webhooks/stripe", data="{}", headers={"Stripe-Signature": "t=1"})
        assert (response.status_code, response.json) == (
            503,
            {"error": "billing is not configured"},
        )
        result = app.test_cli_runner().invoke(args=["stripe", "setup"])
        assert result.exit_code == 1
        assert "STRIPE_SECRET_KEY is not set" in result.output


class TestSetupCommand:
    def test_creates_the_price_once_then_finds_it(self, app, fake_stripe):
        fake_stripe.prices.clear()
        runner = app.test_cli_runner()
        first = runner.invoke(args=["stripe", "setup"])
        assert first.exit_code == 0, first.output
        [line] = [x for x in first.stdout.splitlines() if x.startswith("STRIPE_PRICE_ID=")]
        price_id = line.split("=", 1)[1]
        price = fake_stripe.prices[price_id]
        assert (price["unit_amount"], price["currency"], price["recurring"]["interval"]) == (
            500,
            "usd",
            "month",
        )
        assert price["lookup_key"] == "both_sides_daily_monthly"
        assert fake_stripe.products["both_sides_daily"]["name"] == "Both Sides Daily"
        second = runner.invoke(args=["stripe", "setup"])
        assert second.exit_code == 0
        assert f"STRIPE_PRICE_ID={price_id}" in second.stdout
        assert len(fake_stripe.prices) == 1 and len(fake_stripe.products) == 1
