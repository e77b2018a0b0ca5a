"""Property tests of every provider parser: whatever JSON arrives, a parser either returns
reports or says `Malformed` (never another exception), and a well-formed event comes back
with its address, id and kind."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.deliverability.models import ReportKind
from newsletter.deliverability.providers import (
    Malformed,
    Unauthentic,
    epoch_time,
    iso_time,
    mailgun,
    postmark,
    sendgrid,
    ses,
)
from tests.deliverability import signing

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=5)
    ),
    max_leaves=20,
)
KEYS = st.sampled_from(
    ["RecordType", "Type", "ID", "Email", "event", "severity", "id", "recipient", "email",
     "sg_event_id", "reason", "type", "event-data", "signature", "Message", "bounce",
     "notificationType", "bouncedRecipients", "emailAddress", "feedbackId", "complaint"]
)  # fmt: skip
# Objects using the providers' own keys, so the parsers get past their first checks.
SHAPED = st.recursive(
    JSON,
    lambda inner: st.dictionaries(KEYS, inner | st.sampled_from(
        ["Bounce", "HardBounce", "SpamComplaint", "failed", "complained", "permanent",
         "bounce", "dropped", "spamreport", "Permanent", "Complaint", "a@example.com"]
    ), max_size=8) | st.lists(inner, max_size=3),
    max_leaves=30,
)  # fmt: skip
ADDRESS = st.from_regex(r"[a-z0-9._+-]{1,20}@[a-z0-9-]{1,20}\.[a-z]{2,6}", fullmatch=True)
SENDGRID_KEY = sendgrid.load_public_key(signing.SendgridKeys().public)
EVENT_ID = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40)


def _only_malformed(parse: Any, payload: Any) -> None:
    try:
        found = parse(payload)
    except Malformed:
        return
    assert isinstance(found, list)
    for report in found:
        assert report.kind in ReportKind
        assert report.event_id and report.recipient


@settings(max_examples=100, deadline=None)
@given(SHAPED)
def test_postmark_parse_refuses_or_reads(payload: Any) -> None:
    _only_malformed(postmark.parse, payload)


@settings(max_examples=100, deadline=None)
@given(SHAPED)
def test_mailgun_parse_refuses_or_reads(payload: Any) -> None:
    _only_malformed(mailgun.parse, {"event-data": payload})
    _only_malformed(mailgun.parse, payload)


@settings(max_examples=100, deadline=None)
@given(SHAPED)
def test_sendgrid_parse_refuses_or_reads(payload: Any) -> None:
    _only_malformed(sendgrid.parse, payload)
    _only_malformed(sendgrid.parse, [payload])


@settings(max_examples=100, deadline=None)
@given(SHAPED)
def test_ses_parse_refuses_or_reads(payload: Any) -> None:
    _only_malformed(ses.parse, {"Type": "Notification", "Message": json.dumps(payload)})


@settings(max_examples=60, deadline=None)
@given(SHAPED)
def test_verifiers_refuse_anything_unsigned(payload: Any) -> None:
    for check in (
        lambda: mailgun.verify(payload, signing.MAILGUN_KEY, now=0, tolerance=300),
        lambda: ses.verify(
            payload, ses.Certificates(fetcher=_no_fetch), frozenset({signing.TOPIC})
        ),
    ):
        try:
            check()
        except (Unauthentic, Malformed):
            continue
        raise AssertionError("an unsigned payload passed")


def _no_fetch(url: str) -> bytes:
    raise OSError("no network in this test")


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=200), st.text(max_size=120), st.text(max_size=15))
def test_sendgrid_verify_refuses_junk(body: bytes, signature: str, timestamp: str) -> None:
    try:
        sendgrid.verify(body, signature, timestamp, SENDGRID_KEY, now=0, tolerance=300)
    except Unauthentic:
        return
    raise AssertionError("junk passed")


@settings(max_examples=60, deadline=None)
@given(ADDRESS, st.integers(min_value=1, max_value=2**62), st.sampled_from(
    ["HardBounce", "BadEmailAddress", "SoftBounce", "Transient", "SpamComplaint"]
))  # fmt: skip
def test_postmark_reads_its_events(address: str, event_id: int, kind: str) -> None:
    (report,) = postmark.parse(signing.postmark_bounce(address, kind, event_id))
    assert report.recipient == address and str(event_id) in report.event_id
    expected = {"SpamComplaint": ReportKind.COMPLAINT, "HardBounce": ReportKind.HARD_BOUNCE,
                "BadEmailAddress": ReportKind.HARD_BOUNCE}.get(kind, ReportKind.SOFT_BOUNCE)  # fmt: skip
    assert report.kind == expected


@settings(max_examples=60, deadline=None)
@given(ADDRESS, EVENT_ID, st.booleans())
def test_mailgun_reads_its_events(address: str, event_id: str, permanent: bool) -> None:
    (report,) = mailgun.parse(
        {"event-data": signing.mailgun_failed(address, permanent=permanent, event_id=event_id)}
    )
    assert (report.recipient, report.event_id) == (address, event_id)
    assert report.kind == (ReportKind.HARD_BOUNCE if permanent else ReportKind.SOFT_BOUNCE)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(ADDRESS, EVENT_ID), min_size=1, max_size=5, unique_by=lambda t: t[1]))
def test_sendgrid_reads_every_event_of_a_batch(events: list[tuple[str, str]]) -> None:
    batch = [signing.sendgrid_event(a, "spamreport", i) for a, i in events]
    found = sendgrid.parse(batch)
    assert [(r.recipient, r.event_id) for r in found] == events
    assert {r.kind for r in found} == {ReportKind.COMPLAINT}


@settings(max_examples=60, deadline=None)
@given(
    ADDRESS,
    st.text(st.characters(min_codepoint=48, max_codepoint=122), min_size=1, max_size=30),
    st.booleans(),
)
def test_ses_reads_its_events(address: str, feedback: str, permanent: bool) -> None:
    event = signing.ses_bounce(address, permanent=permanent, feedback=feedback)
    (report,) = ses.parse({"Type": "Notification", "Message": json.dumps(event)})
    assert report.recipient == address and report.event_id == f"{feedback}/{address}"


@given(st.text(max_size=40) | st.integers() | st.floats() | st.none() | st.booleans())
def test_times_never_raise(value: Any) -> None:
    iso_time(value)
    epoch_time(value)
