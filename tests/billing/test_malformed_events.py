"""Validly signed bodies that are not events the handlers can read: a 400 or ignored with
a 200, never a 500 (which Stripe would retry for three days), nothing half-written. On
both paths of the webhook, before Flask and in it."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from sqlalchemy import func, select

from newsletter.billing.models import BillingCustomer, BillingSubscription
from tests.billing.conftest import SECRET, event_rows
from tests.billing.fake_stripe import FakeStripe, signed
from tests.lean_paths import VIAS, lean_answers, post_via

DEEP = 4000


def event(**fields: Any) -> dict[str, Any]:
    base = FakeStripe.event("customer.updated", {"id": "cus_test_1", "object": "customer"})
    return {**base, **fields}


def without(key: str) -> dict[str, Any]:
    body = event()
    del body[key]
    return body


def raw_event(obj: str) -> str:
    """An event whose `data.object` is `obj`, JSON text as given."""
    head = json.dumps({k: v for k, v in event().items() if k != "data"})
    return head[:-1] + f', "data": {{"object": {obj}}}}}'


REFUSED: dict[str, str] = {
    "nested 4,000 deep": raw_event("[" * DEEP + "]" * DEEP),
    "nested 4,000 deep, unclosed": raw_event("[" * DEEP),
    "a 5,000-character id": json.dumps(event(id="evt_" + "x" * 5000)),
    "a 256-character id": json.dumps(event(id="e" * 256)),
    "NUL in the id": json.dumps(event(id="evt_\x00bad")),
    "an empty id": json.dumps(event(id="")),
    "an id that is a number": json.dumps(event(id=12345)),
    "NUL in the type": json.dumps(event(type="customer.updated\x00")),
    "a 5,000-character type": json.dumps(event(type="x" * 5000)),
    "type missing": json.dumps(without("type")),
    "type not a string": json.dumps(event(type=["customer.updated"])),
    "created 1e20": json.dumps(event()).replace(
        f'"created": {event()["created"]}', '"created": 1e20'
    ),
    "created 10**20": json.dumps(event(created=10**20)),
    "created negative": json.dumps(event(created=-1)),
    "created a string": json.dumps(event(created="1700000000")),
    "created true": json.dumps(event(created=True)),
    "created missing": json.dumps(without("created")),
    "data.object a list": json.dumps(event(data={"object": []})),
    "data.object a string": json.dumps(event(data={"object": "cus_test_1"})),
    "data.object null": json.dumps(event(data={"object": None})),
    "data not an object": json.dumps(event(data=[{"object": {}}])),
    "a list": json.dumps([event()]),
    "a string": json.dumps("evt_1"),
    "a number": "17",
    "null": "null",
    "NaN inside": raw_event('{"id": "cus_test_1", "balance": NaN}'),
    "a 5,000-digit integer inside": raw_event('{"id": "cus_test_1", "n": ' + "9" * 5000 + "}"),
    "not JSON": '{"id": "evt_1", ',
}

# Well-formed events whose object's ids are not Stripe's: there is nothing to act on.
IGNORED: dict[str, tuple[dict[str, Any], str]] = {
    "a customer id with NUL": (
        event(data={"object": {"id": "cus_\x00", "object": "customer"}}),
        "ignored: no customer",
    ),
    "a 5,000-character customer id": (
        event(data={"object": {"id": "cus_" + "x" * 5000}}),
        "ignored: no customer",
    ),
    "a subscription id with NUL": (
        event(type="customer.subscription.updated", data={"object": {"id": "sub_\x00"}}),
        "ignored: no subscription",
    ),
    "a trial ending with no subscription id": (
        event(type="customer.subscription.trial_will_end", data={"object": {"id": 7}}),
        "ignored: no subscription",
    ),
    "an invoice's subscription details not an object": (
        event(
            type="invoice.payment_failed",
            data={"object": {"id": "in_1", "parent": {"subscription_details": "sub_1"}}},
        ),
        "ignored: not a subscription invoice",
    ),  # fmt: skip
    "a failed invoice without an id": (
        event(type="invoice.payment_failed", data={"object": {"subscription": "sub_test_1"}}),
        "ignored: no invoice",
    ),
    "a checkout's subscription a list": (
        event(
            type="checkout.session.completed",
            data={"object": {"mode": "subscription", "subscription": ["sub_1"]}},
        ),
        "ignored: no subscription",
    ),  # fmt: skip
}


def post_signed(client, via: str, payload: str):  # type: ignore[no-untyped-def]
    _, header = signed(payload, SECRET)
    return post_via(client, via, "/webhooks/stripe", payload.encode(),
                    {"Stripe-Signature": header, "Content-Type": "application/json"})  # fmt: skip


def stored(session) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    session.rollback()
    return (
        session.scalar(select(func.count()).select_from(BillingCustomer)),
        session.scalar(select(func.count()).select_from(BillingSubscription)),
    )


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("case", list(REFUSED))
def test_a_malformed_event_is_a_400_and_stores_nothing(
    app, client, session, fake_stripe, via, case
):  # type: ignore[no-untyped-def]
    with lean_answers(app) as lean:
        response = post_signed(client, via, REFUSED[case])
    assert response.status_code == 400, response.get_data(as_text=True)
    assert list(response.json) == ["error"]
    # The webhook has no route before Flask: both ways reach the Flask view.
    assert lean == []
    assert event_rows(session) == []
    assert stored(session) == (0, 0)
    assert fake_stripe.requests == []


@pytest.mark.parametrize("via", VIAS)
@pytest.mark.parametrize("case", list(IGNORED))
def test_an_event_with_malformed_object_ids_is_ignored(client, session, fake_stripe, via, case):  # type: ignore[no-untyped-def]
    body, outcome = IGNORED[case]
    response = post_signed(client, via, json.dumps(body))
    assert (response.status_code, response.json) == (200, {"received": True, "outcome": outcome})
    assert [row.event_id for row in event_rows(session)] == [body["id"]]
    assert stored(session) == (0, 0)


def test_a_redelivery_of_an_ignored_event_is_a_duplicate(client, session, fake_stripe):  # type: ignore[no-untyped-def]
    body, _ = IGNORED["a customer id with NUL"]
    body = {**body, "created": int(time.time()) - 60}  # old enough for the stored-state probe
    for outcome in ("ignored: no customer", "duplicate"):
        response = post_signed(client, "lean", json.dumps(body))
        assert (response.status_code, response.json["outcome"]) == (200, outcome)
    assert len(event_rows(session)) == 1
