"""Webhook signatures: real HMACs in Stripe's `t=…,v1=…` header, checked against every
configured secret, within 300 seconds either way."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.billing.conftest import OLD_SECRET, SECRET, event_rows, post_event
from tests.billing.fake_stripe import FakeStripe, signed
from tests.lean_paths import VIAS, lean_answers, post_via
from webhooks.signature import BadWebhook, verify_event, verify_signature

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
        timestamp = int(time.time())
        mac = hmac.new(SECRET.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
        with pytest.raises(BadWebhook, match="UTF-8"):
            check(body, f"t={timestamp},v1={mac.hexdigest()}")


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


# --- the header's format -----------------------------------------------------------------

PAYLOAD = json.dumps(EVENT)


def v1(timestamp: int, payload: str = PAYLOAD, secret: str = SECRET) -> str:
    """A real signature, made by stripe-python, of `payload` signed at `timestamp`."""
    header = stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)
    return header.split(",v1=")[1]


def refused_headers(now: int) -> dict[str, str]:
    old = now - 3600
    return {
        "the bypass": f"v1=00, t={now},t={old},v1={v1(old)}",
        "two t, fresh first": f"t={now},t={old},v1={v1(old)}",
        "two t, old first": f"t={old},t={now},v1={v1(old)}",
        "the same t twice": f"t={now},v1={v1(now)},t={now}",
        "t missing": f"v1={v1(now)}",
        "t not an integer": f"t={now}.5,v1={v1(now)}",
        "t in hex": f"t={now:#x},v1={v1(now)}",
        "t empty": f"t=,v1={v1(now)}",
        "t negative": f"t=-{now},v1={v1(now)}",
        "t with a plus": f"t=+{now},v1={v1(now)}",
        "t with a leading zero": f"t=0{now},v1={v1(now)}",
        "t huge": f"t={'9' * 40},v1={v1(now)}",
        "t in other digits": f"t={str(now).replace('1', '١')},v1={v1(now)}",
        "key in capitals": f"T={now},v1={v1(now)}",
        "an empty item": f"t={now},,v1={v1(now)}",
        "a trailing comma": f"t={now},v1={v1(now)},",
        "a leading comma": f",t={now},v1={v1(now)}",
        "an item without =": f"t={now},v1,v1={v1(now)}",
        "an empty key": f"t={now},={v1(now)}",
        "an empty v1": f"t={now},v1=,v1={v1(now)}",
        "two = in an item": f"t={now},v1={v1(now)}=x",
        "a space after a comma": f"t={now}, v1={v1(now)}",
        "a space before =": f"t ={now},v1={v1(now)}",
        "a tab": f"t={now},\tv1={v1(now)}",
        "a leading space": f" t={now},v1={v1(now)}",
        "v1 in capitals": f"t={now},v1={v1(now).upper()}",
        "v1 too short": f"t={now},v1={v1(now)[:-2]}",
        "only v0": f"t={now},v0={v1(now)}",
        "not ASCII": f"t={now},v1={v1(now)},v0=é",
        "10 KB": f"t={now},v1={v1(now)},v0={'a' * 10_000}",
        "signed an hour ago": f"t={old},v1={v1(old)}",
        "the fresh t not the signed one": f"t={now},v1={v1(old)}",
    }


def accepted_headers(now: int) -> dict[str, str]:
    return {
        "as Stripe sends it": f"t={now},v1={v1(now)}",
        "v1 first": f"v1={v1(now)},t={now}",
        "another secret's v1 too": f"t={now},v1={v1(now, secret='whsec_x')},v1={v1(now)}",
        "a v0 and an unknown scheme, ignored": f"t={now},v0={'0' * 64},v1={v1(now)},v9=x",
    }


class TestHeaderFormat:
    """One `t`, any number of `v1`, other schemes ignored, nothing else: through HTTP,
    before Flask and in it, a refused header is a 400 and stores nothing."""

    @pytest.mark.parametrize("via", VIAS)
    @pytest.mark.parametrize("case", list(refused_headers(0)))
    def test_refused_with_400(self, app, client, session, via, case):
        header = refused_headers(int(time.time()))[case]
        with lean_answers(app) as lean:
            response = post_via(client, via, "/webhooks/stripe", PAYLOAD.encode(),
                                {"Stripe-Signature": header, "Content-Type": "application/json"})  # fmt: skip
        assert (response.status_code, list(response.json)) == (400, ["error"]), response.json
        # The webhook has no route before Flask: both ways reach the Flask view.
        assert lean == []
        assert event_rows(session) == []

    @pytest.mark.parametrize("via", VIAS)
    @pytest.mark.parametrize("case", list(accepted_headers(0)))
    def test_accepted(self, app, client, session, via, case):
        header = accepted_headers(int(time.time()))[case]
        response = post_via(client, via, "/webhooks/stripe", PAYLOAD.encode(),
                            {"Stripe-Signature": header, "Content-Type": "application/json"})  # fmt: skip
        assert response.status_code == 200, response.json
        assert [row.event_id for row in event_rows(session)] == [EVENT["id"]]

    def test_the_bypass_is_refused_for_its_shape(self):
        now = int(time.time())
        with pytest.raises(BadWebhook, match="more than one timestamp"):
            check(PAYLOAD, refused_headers(now)["two t, fresh first"])
        # stripe-python, given the same header, takes the first item keyed exactly `t`
        # and so checks the old signature against the old timestamp: it verifies.
        header = refused_headers(now)["the bypass"]
        assert stripe.WebhookSignature.verify_header(PAYLOAD, header, SECRET, tolerance=None)
        with pytest.raises(BadWebhook, match="Stripe-Signature"):
            check(PAYLOAD, header)


class TestTolerance:
    """The age is that of the one timestamp that was signed."""

    @pytest.mark.parametrize(
        ("skew", "ok"), [(-301, False), (-299, True), (299, True), (301, False)]
    )
    def test_against_the_signed_timestamp(self, skew, ok):
        now = 1_800_000_000
        header = f"t={now + skew},v1={v1(now + skew)}"
        if ok:
            assert check(PAYLOAD, header, now=now)["id"] == EVENT["id"]
        else:
            with pytest.raises(BadWebhook, match="too old" if skew < 0 else "future"):
                check(PAYLOAD, header, now=now)

    def test_a_fresh_timestamp_does_not_carry_an_old_signature(self):
        now = 1_800_000_000
        with pytest.raises(BadWebhook, match="no signature matches"):
            check(PAYLOAD, f"t={now},v1={v1(now - 3600)}", now=now)


# --- the parser, for any header ------------------------------------------------------------

NOW = int(time.time())
OLD = NOW - 3600
BODY = PAYLOAD.encode()
_KNOWN_ITEMS = [
    f"t={NOW}", f"t={OLD}", f"t={NOW + 3600}", f"v1={v1(NOW)}", f"v1={v1(OLD)}",
    f"v0={v1(NOW)}", f"v1={v1(NOW).upper()}", "v1=00", "t=", "t", "=", "", " ", f" t={NOW}",
    f"t={NOW} ", f"t=0{NOW}", f"t=-{NOW}", f"T={NOW}", "v2=x", "t=1e9", f"v1={v1(NOW)}=",
]  # fmt: skip
_items = st.one_of(
    st.sampled_from(_KNOWN_ITEMS),
    st.builds(
        "{}={}".format,
        st.sampled_from(["t", "v1", "v0", "x"]),
        st.integers(-(10**20), 10**20).map(str) | st.text(max_size=70),
    ),  # fmt: skip
    st.text(max_size=20),
)
_headers = st.one_of(st.none(), st.text(max_size=200), st.lists(_items, max_size=8).map(",".join))


@settings(max_examples=200, deadline=None, database=None)
@given(header=_headers)
def test_any_header_is_verified_or_refused_and_what_verifies_is_unambiguous(header):
    try:
        parsed = verify_signature(BODY, header, [SECRET], now=NOW)
    except BadWebhook:
        return
    assert header is not None
    items = header.split(",")
    timestamps = [item for item in items if item.split("=")[0] == "t"]
    assert timestamps == [f"t={parsed.timestamp}"]
    assert abs(parsed.timestamp - NOW) <= 300
    assert f"v1={v1(parsed.timestamp)}" in items
    assert all(item.count("=") == 1 and item.strip() == item and item for item in items)
    # What verifies here, stripe-python verifies too (it reads the same t).
    assert stripe.WebhookSignature.verify_header(PAYLOAD, header, SECRET, tolerance=300)


_well_formed_extras = st.lists(
    st.one_of(
        st.builds("v1={}".format, st.text("0123456789abcdef", min_size=64, max_size=64)),
        st.builds("v0={}".format, st.text("0123456789abcdef", min_size=1, max_size=64)),
        st.builds(
            "{}={}".format,
            st.sampled_from(["v0", "v2", "x9"]),
            st.text("abcXYZ019_-+/", min_size=1, max_size=20),
        ),  # fmt: skip
    ),
    max_size=5,
)


@settings(max_examples=200, deadline=None, database=None)
@given(extras=_well_formed_extras, skew=st.integers(-300, 300), data=st.data())
def test_one_signed_timestamp_and_its_v1_among_any_others_verify(extras, skew, data):
    timestamp = NOW + skew
    items = data.draw(st.permutations([f"t={timestamp}", f"v1={v1(timestamp)}", *extras]))
    header = ",".join(items)
    assert verify_signature(BODY, header, [SECRET], now=NOW).timestamp == timestamp
