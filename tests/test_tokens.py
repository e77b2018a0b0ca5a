"""Property tests of the token readers: anything but a genuine token is refused with
`InvalidToken`, never another exception, and a genuine token reads back as signed."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from flask import Flask
from hypothesis import given, settings
from hypothesis import strategies as st

from newsletter.errors import InvalidToken
from newsletter.tokens import (
    LinkClaims,
    LinkSigner,
    MessageIds,
    Purpose,
    UnsubscribeSigner,
    make_compact,
    make_token,
    read_compact,
    read_token,
    stable_message_id,
    unsubscribe_token,
)

SECRET = "token-property-secret-0123456789abcdef"
PROPERTY = settings(max_examples=200, deadline=None)

# Arbitrary text, and text from the alphabets tokens are made of (so that the parsing
# after the first checks is reached too).
_b64 = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=80
)
_itsdangerous = st.builds(lambda a, b, c: f"{a}.{b}.{c}", _b64, _b64, _b64) | st.builds(
    lambda a, b: f"{a}.{b}", _b64, _b64
)
junk = st.one_of(st.text(max_size=600), _b64, _itsdangerous, st.just(""))
# Database ids (a PostgreSQL integer column); tokens are sized for them.
ids = st.integers(min_value=0, max_value=2**31 - 1)


@pytest.fixture(scope="module", autouse=True)
def _app_context() -> Iterator[None]:
    # The readers take SECRET_KEY from the app; nothing else of the app is needed.
    app = Flask(__name__)
    app.config["SECRET_KEY"] = SECRET
    with app.app_context():
        yield


@PROPERTY
@given(junk, st.sampled_from([Purpose.CONFIRM, Purpose.SIGNIN, Purpose.UNSUBSCRIBE]))
def test_read_token_refuses_junk_with_invalid_token_only(token: str, purpose: Purpose) -> None:
    for max_age in (None, 3600):
        with pytest.raises(InvalidToken):
            read_token(purpose, token, max_age=max_age)


@PROPERTY
@given(st.dictionaries(st.sampled_from(["r", "n", "e", "x"]), ids | st.text(max_size=40)))
def test_read_token_round_trips_and_is_bound_to_its_purpose(payload: dict) -> None:  # type: ignore[type-arg]
    token = make_token(Purpose.SIGNIN, payload)
    assert read_token(Purpose.SIGNIN, token, max_age=60) == payload
    with pytest.raises(InvalidToken):
        read_token(Purpose.CONFIRM, token, max_age=60)
    forever = make_token(Purpose.UNSUBSCRIBE, payload, expires=False)
    assert read_token(Purpose.UNSUBSCRIBE, forever, max_age=None) == payload


@PROPERTY
@given(junk, st.sampled_from([Purpose.READING, Purpose.READ_VIEW]))
def test_read_compact_refuses_junk_with_invalid_token_only(token: str, purpose: Purpose) -> None:
    with pytest.raises(InvalidToken):
        read_compact(purpose, token, max_age=3600)


@PROPERTY
@given(ids, ids, ids, ids)
def test_read_compact_round_trips(reader: int, story: int, edition: int, month: int) -> None:
    reading = make_compact(Purpose.READING, reader, edition)
    assert read_compact(Purpose.READING, reading, max_age=60) == [reader or None, edition or None]
    view = make_compact(Purpose.READ_VIEW, reader, story, edition, month)
    assert read_compact(Purpose.READ_VIEW, view, max_age=60) == [
        v or None for v in (reader, story, edition, month)
    ]
    with pytest.raises(InvalidToken):  # one kind never passes for another
        read_compact(Purpose.READ_VIEW, reading, max_age=60)


@PROPERTY
@given(junk)
def test_link_signer_refuses_junk_with_invalid_token_only(token: str) -> None:
    with pytest.raises(InvalidToken):
        LinkSigner(SECRET).verify(token)


@PROPERTY
@given(ids, ids, ids)
def test_link_signer_round_trips(reader: int, edition: int, story: int) -> None:
    signer = LinkSigner(SECRET)
    token = signer.sign(reader, edition, story)
    assert signer.verify(token) == LinkClaims(reader, edition, story)
    with pytest.raises(InvalidToken):
        LinkSigner(SECRET + "x").verify(token)


@PROPERTY
@given(ids)
def test_unsubscribe_signer_makes_the_serializers_token(reader: int) -> None:
    signer = UnsubscribeSigner(SECRET)
    assert signer.fast
    token = signer.sign(reader)
    assert token == unsubscribe_token(reader, secret=SECRET)
    assert read_token(Purpose.UNSUBSCRIBE, token, max_age=None) == {"r": reader}


@PROPERTY
@given(ids, ids)
def test_message_ids_are_stable_and_the_same_both_ways(edition: int, reader: int) -> None:
    mail_from = "Both Sides Daily <daily@bothsides.test>"
    made = MessageIds(SECRET, mail_from, "e", edition, "r").make(reader)
    assert made == stable_message_id(SECRET, mail_from, "e", edition, "r", reader)
    assert made.startswith(f"<e.{edition}.r.{reader}.") and made.endswith("@bothsides.test>")
    assert made != MessageIds(SECRET + "x", mail_from, "e", edition, "r").make(reader)
