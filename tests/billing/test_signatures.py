"""Webhook signatures: real HMACs in Stripe's `t=…,v1=…` header, checked against every
configured secret, within 300 seconds either way."""

from __future__ import annotations

import json
import time

import pytest

from tests.billing.conftest import OLD_SECRET, SECRET, event_rows, post_event
from tests.billing.fake_stripe import FakeStripe, signed
from webhooks.signature import BadWebhook, verify_event

EVENT = FakeStripe.event("customer.updated", {"id": "cus_test_1", "object": "customer"})


def check(payload: str | bytes, header: str | None, secrets=(SECRET,), now=None):  # type: ignore[no-untyped-def]
    body = payload.encode() if isinstance(payload, str) else payload
    return verify_event(body, header, list(secrets), now=now)


class TestVerify:
    def test_a_good_signature(self):
        payload, header = signed(EVENT, SECRET)
        assert check(payload, header)["id"] == EVENT["id"]

    def test_forged_with_another_secret(self):
        payload, header = signed(EVENT, "whsec_attacker")
        with pytest.raises(BadWebhook, match="no signature matches"):
            check(payload, header)

    def test_body_changed_after_signing(self):
        payload, header = signed(EVENT, SECRET)
        with pytest.raises(BadWebhook, match="no signature matches"):
            check(payload.replace("cus_test_1", "cus_test_2"), header)

    @pytest.mark.parametrize("header", [None, "", "v1=abc", "t=notanumber,v1=abc", "t=123"])
    def test_missing_or_malformed_header(self, header):
        payload, _ = signed(EVENT, SECRET)
        with pytest.raises(BadWebhook):
            check(payload, header)

    def test_stale(self):
        payload, header = signed(EVENT, SECRET, timestamp=int(time.time()) - 301)
        with pytest.raises(BadWebhook, match="too old"):
            check(payload, header)

    def test_future(self):
        # stripe-python only refuses old timestamps; a post-dated one is refused here.
        payload, header = signed(EVENT, SECRET, timestamp=int(time.time()) + 301)
        with pytest.raises(BadWebhook, match="future"):
            check(payload, header)

    def test_within_the_tolerance_both_ways(self):
        now = time.time()
        for skew in (-299, 299):
            payload, header = signed(EVENT, SECRET, timestamp=int(now) + skew)
            assert check(payload, header, now=now)["id"] == EVENT["id"]

    def test_rotation_accepts_either_secret(self):
        for secret in (SECRET, OLD_SECRET):
            payload, header = signed(EVENT, secret)
            assert check(payload, header, secrets=(SECRET, OLD_SECRET))["id"] == EVENT["id"]

    def test_several_v1_signatures_in_one_header(self):
        # Stripe sends one v1 per active secret while a secret is being rolled.
        payload, header = signed(EVENT, SECRET)
        _, old = signed(EVENT, OLD_SECRET, timestamp=int(header.split(",")[0][2:]))
        both = header + "," + old.split(",")[1]
        assert check(payload, both, secrets=(OLD_SECRET,))["id"] == EVENT["id"]

    @pytest.mark.parametrize(
        "payload",
        ["not json", "[]", json.dumps({"id": "evt_1", "type": "x"}), json.dumps({"data": {}})],
    )
    def test_signed_but_not_an_event(self, payload):
        _, header = signed(payload, SECRET)
        with pytest.raises(BadWebhook):
            check(payload, header)

    def test_not_utf8(self):
        body = b"\xff\xfe{}"
        header = f"t={int(time.time())},v1=00"
        with pytest.raises(BadWebhook, match="UTF-8"):
            check(body, header)


def test_the_endpoint_answers_400_and_stores_nothing(client, session):
    bad = [
        {"Stripe-Signature": signed(EVENT, "whsec_attacker")[1]},
        {},
        {"Stripe-Signature": signed(EVENT, SECRET, timestamp=int(time.time()) - 600)[1]},
        {"Stripe-Signature": signed(EVENT, SECRET, timestamp=int(time.time()) + 600)[1]},
    ]
    payload = json.dumps(EVENT)
    for headers in bad:
        response = client.post(
            "/webhooks/stripe",
            data=payload,
            headers={**headers, "Content-Type": "application/json"},
        )
        assert response.status_code == 400, headers
        assert "error" in response.json
    garbage, header = signed("{not json", SECRET)
    response = client.post("/webhooks/stripe", data=garbage, headers={"Stripe-Signature": header})
    assert response.status_code == 400
    assert event_rows(session) == []


def test_the_endpoint_accepts_the_old_secret_during_rotation(app_settings, session, client):
    # app_settings below lists both secrets, as an operator rolling them would.
    response = post_event(client, EVENT, secret=OLD_SECRET)
    assert response.status_code == 200
    assert response.json["outcome"] == "ignored: unknown customer"
    assert len(event_rows(session)) == 1


@pytest.fixture
def app_settings(stripe_settings):  # type: ignore[no-untyped-def]
    return {**stripe_settings, "STRIPE_WEBHOOK_SECRET": f"{SECRET}, {OLD_SECRET}"}
