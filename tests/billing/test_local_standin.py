"""`make run`'s billing without a Stripe account: localstripe for the API, the TEST MODE
stand-in (newsletter/dev/stripe_standin.py) for Checkout and the portal. In Chromium a
reader goes from the paywall to a trial, to paying, to cancelling; every change reaches
the app as a real signed webhook (the stand-in's and localstripe's own)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from werkzeug.serving import make_server

from newsletter.billing.entitlement import Plan, plan_of
from newsletter.dev.stripe_standin import (
    PLAN_ID,
    StandIn,
    create_standin,
    prepare_when_ready,
    signature_header,
    unflatten,
)
from newsletter.readers.models import Reader
from newsletter.tokens import Purpose, make_compact
from newsletter.tracking.views import READING_COOKIE
from tests.billing.conftest import SECRET, LocalStripe, wait_until
from tests.conftest import links_in
from tests.smtp_server import free_port
from tests.tracking.conftest import send_edition

STANDIN_PORT = free_port()


@pytest.fixture
def app_settings(localstripe: LocalStripe) -> dict[str, Any]:
    return {
        "FREE_STORIES_PER_MONTH": 0,
        "STRIPE_SECRET_KEY": "sk_test_local",
        "STRIPE_API_BASE": f"http://127.0.0.1:{STANDIN_PORT}",
        "STRIPE_PRICE_ID": PLAN_ID,
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "STRIPE_DEV_STANDIN": True,
    }


@pytest.fixture
def standin(live_server, localstripe: LocalStripe) -> Iterator[StandIn]:  # type: ignore[no-untyped-def]
    state = StandIn(
        upstream=localstripe.url,
        public_url=f"http://127.0.0.1:{STANDIN_PORT}",
        webhook_url=f"{live_server.url}/webhooks/stripe",
        webhook_secret=SECRET,
    )
    prepare_when_ready(state, timeout=20)
    server = make_server("127.0.0.1", STANDIN_PORT, create_standin(state), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    thread.join(5)


def _plan(app, email: str) -> Plan:  # type: ignore[no-untyped-def]
    with app.app_context(), app.extensions["db"].session() as s:
        reader = s.query(Reader).filter_by(email=email).one()
        return plan_of(s, reader.id)


@pytest.mark.browser
def test_paywall_to_trial_to_paid_to_cancelled(live_server, smtp, browser_page, standin):  # type: ignore[no-untyped-def]
    app = live_server.app
    session = app.extensions["db"].sessionmaker()
    try:
        edition = send_edition(app, session, smtp).edition
        reader = session.query(Reader).filter_by(email="ann@example.com").one()
        slug = edition.stories[0].story.slug
        with app.app_context():
            # What the email's tracked link sets (tracked links are tested on their own;
            # here their background click writer would only race the pages on SQLite).
            cookie = make_compact(Purpose.READING, reader.id, edition.id)
    finally:
        session.close()
    page = browser_page
    page.context.add_cookies(
        [{"name": READING_COOKIE, "value": cookie, "url": live_server.url, "httpOnly": True}]
    )

    # From the email to the paywall: billing is on, so the trial is offered.
    page.goto(f"{live_server.url}/stories/{slug}")
    page.get_by_role("heading", name="Subscribe to unlock this story").wait_for()
    assert page.locator("#test-mode").is_visible()
    page.get_by_role("link", name="Get Started").click()

    # Signing in first says why, and already has the address the email went to.
    page.get_by_role("heading", name="Sign in to start your trial").wait_for()
    assert page.get_by_label("Your email address").input_value() == "ann@example.com"
    page.get_by_role("button", name="Email me a sign-in link").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()
    signin_email = smtp.wait_for("ann@example.com", count=2)[1]
    [signin_link] = links_in(signin_email, "/signin/")
    page.goto(signin_link)
    page.get_by_role("button", name="Sign in").click()

    # The plan page, then the stand-in's Checkout, labelled TEST MODE.
    page.get_by_role("button", name="Start my free 7-day trial").click()
    try:
        page.get_by_role("heading", name="Start your free trial").wait_for()
    except Exception:
        print("DBG", page.url, page.locator("main").inner_text()[:800])
        raise
    assert "TEST MODE" in page.locator("#test-mode").inner_text()
    page.get_by_role("button", name="Start trial").click()
    page.get_by_role("heading", name="Your free trial has started").wait_for()
    assert _plan(app, "ann@example.com") == Plan.TRIAL

    # The portal: end the trial (now paying), then cancel at the period's end.
    page.get_by_role("link", name="Go to your account").click()
    page.get_by_role("button", name="Manage billing").click()
    page.get_by_role("heading", name="Manage your plan").wait_for()
    assert page.locator("#test-mode").is_visible()
    page.get_by_role("button", name="End the trial now and pay").click()
    page.locator("#status", has_text="active").wait_for()
    wait_until(lambda: _plan(app, "ann@example.com") == Plan.PAID)
    page.get_by_role("button", name="Cancel plan").click()
    page.get_by_text("cancels at the end of the period").wait_for()
    page.get_by_role("link", name="Return to Both Sides Daily").click()

    def shows_cancelled() -> bool:
        page.reload()
        return page.locator("#cancels").count() == 1

    wait_until(shows_cancelled)
    assert page.locator("#plan").inner_text().startswith("Paid")
    assert page.locator("#cancels").inner_text().startswith("Cancels on ")


def test_stripe_form_encoding_and_signature_match_stripes() -> None:
    import stripe

    params = unflatten(
        [
            ("line_items[0][price]", "price_x"),
            ("line_items[0][quantity]", "1"),
            ("subscription_data[metadata][reader_id]", "7"),
            ("mode", "subscription"),
        ]
    )
    assert params == {
        "line_items": [{"price": "price_x", "quantity": "1"}],
        "subscription_data": {"metadata": {"reader_id": "7"}},
        "mode": "subscription",
    }
    payload = '{"id": "evt_1"}'
    header = signature_header(payload, SECRET)
    # stripe-python's own verification accepts it: the signature is Stripe's scheme.
    stripe.WebhookSignature.verify_header(payload, header, SECRET, tolerance=300)
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.WebhookSignature.verify_header(payload, header, "whsec_other", tolerance=300)
