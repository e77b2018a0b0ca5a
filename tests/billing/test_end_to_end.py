"""A reader meets the paywall, starts the trial through Checkout, reads everything, manages
billing in the portal, cancels, and is back on the meter. No browser: the test client
follows what the pages link to; Stripe is the fake API plus signed webhooks."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from newsletter.stories.models import Story
from newsletter.tracking.models import Event, EventKind
from tests.billing.conftest import post_event
from tests.helpers import sign_in
from tests.tracking.conftest import send_edition
from tests.tracking.test_meter import BROWSER_UA, confirm, open_story, slug_of

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def app_settings(stripe_settings):  # type: ignore[no-untyped-def]
    return {**stripe_settings, "FREE_STORIES_PER_MONTH": 1}


def test_paywall_trial_everything_cancel_meter(app, client, session, smtp, fake_stripe):
    sent = send_edition(app, session, smtp)
    links = sent.links["ann@example.com"]
    smtp.reset()

    # The free story, then the paywall.
    first = open_story(client, links[0])
    assert confirm(client, first, slug_of(first)).json["charged"] is True
    walled = open_story(client, links[1])
    slug = slug_of(walled)
    html = walled.get_data(as_text=True)
    assert "Subscribe to unlock this story" in html
    # Known from the email link only: Get Started asks for a sign-in first.
    start = re.search(r'id="get-started" href="([^"]+)"', html).group(1)
    assert start == f"/billing/start/{slug}"
    assert client.get(start).status_code == 302
    sign_in(client, smtp, "ann@example.com")
    assert "Start my free 7-day trial" in client.get(start).get_data(as_text=True)

    # Signed in, the paywall's button goes straight to Checkout.
    walled = client.get(f"/stories/{slug}", headers={"User-Agent": BROWSER_UA})
    html = walled.get_data(as_text=True)
    assert 'action="/billing/checkout"' in html and f'name="from" value="{slug}"' in html
    checkout = client.post(
        "/billing/checkout", data={"csrf_token": _CSRF.search(html).group(1), "from": slug}
    )
    assert checkout.status_code == 303
    cs_id = checkout.headers["Location"].rsplit("/", 1)[1]
    params = fake_stripe.checkout_params(cs_id)
    story_id = session.scalar(select(Story.id).where(Story.slug == slug))
    assert params["subscription_data"]["metadata"]["story_id"] == str(story_id)
    assert params["subscription_data"]["metadata"]["edition_id"] == str(sent.edition.id)
    assert params["cancel_url"] == f"http://localhost/stories/{slug}"

    # Stripe: the trial starts and the webhook arrives (before the reader is back).
    fake_stripe.complete_checkout(cs_id)
    event = fake_stripe.event("checkout.session.completed", fake_stripe._get_checkout({}, cs_id))
    assert post_event(client, event).json["outcome"] == "synced: trialing"
    assert "Your free trial has started" in client.get(
        f"/billing/return?session_id={cs_id}"
    ).get_data(as_text=True)

    # Everything reads in full; the meter is out of the way.
    for link in links:
        page = open_story(client, link)
        html = page.get_data(as_text=True)
        assert '<h2 id="articles-h">Articles</h2>' in html, link
        assert "free stories left" not in html and "Subscribe to unlock" not in html
    me = client.get("/api/me").json
    assert me["plan"] == "trial" and me["trial_ends_at"]
    session.rollback()
    [trial] = session.scalars(select(Event).where(Event.kind == EventKind.TRIAL_STARTED))
    assert (trial.story_id, trial.edition_id) == (story_id, sent.edition.id)

    # Manage billing: Stripe's portal, where the reader cancels.
    token = _CSRF.search(client.get("/account").get_data(as_text=True)).group(1)
    portal = client.post("/billing/portal", data={"csrf_token": token})
    assert portal.status_code == 303
    assert portal.headers["Location"].startswith("https://billing.stripe.test/")
    [sub_id] = fake_stripe.subscriptions
    deleted = fake_stripe.event("customer.subscription.deleted", fake_stripe.cancel(sub_id))
    assert post_event(client, deleted).json["outcome"] == "synced: canceled"

    # Back to the meter: the free story used this month, so the paywall again.
    assert client.get("/api/me").json["plan"] == "free"
    again = open_story(client, links[2])
    assert "Subscribe to unlock this story" in again.get_data(as_text=True)
