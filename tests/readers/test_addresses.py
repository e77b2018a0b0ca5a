"""What counts as an email address, at signup and sign-in, and a property test of the
parser itself."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from newsletter.errors import InvalidInput
from newsletter.readers.models import Reader
from newsletter.readers.services import normalize_email
from tests.conftest import csrf_token

REFUSED = [
    ("a" * 65 + "@example.com", "part before the @ can be at most 64 characters"),
    ("=?utf-8?q?ann?=@example.com", "encoded words"),
    ("ann=?utf-8?b?YWRtaW4=?=@example.com", "encoded words"),
    ("ann@=?utf-8?q?example?=.com", "encoded words"),
    ("ann@example.=?iso-8859-1?q?com?=", "encoded words"),
    ("", "enter your email"),
    ("not-an-address", "doesn't look like an email address"),
    ("ann@example.com\r\nBcc: victim@example.com", "line breaks or control characters"),
    ("ann\u200b@example.com", "line breaks or control characters"),
    ("a" * 64 + "@" + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + ".com", "at most 254"),
    ('"ann lee"@example.com', "doesn't look like an email address"),
]


def count(session) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(select(func.count()).select_from(Reader))


@pytest.mark.parametrize(("email", "message"), REFUSED)
def test_signup_refuses_with_a_clear_message(client, session, smtp, email, message):
    response = client.post("/signup", data={"email": email, "csrf_token": csrf_token(client)})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True).replace("&#39;", "'")
    assert count(session) == 0
    assert smtp.received == []


@pytest.mark.parametrize(("email", "message"), REFUSED)
def test_signin_refuses_with_a_clear_message(client, session, smtp, email, message):
    token = csrf_token(client, "/signin")
    response = client.post("/signin", data={"email": email, "csrf_token": token})
    assert response.status_code == 400
    assert message in response.get_data(as_text=True).replace("&#39;", "'")
    assert smtp.received == []


def test_a_64_octet_local_part_is_accepted(client, session, smtp):
    email = "a" * 64 + "@example.com"
    response = client.post("/signup", data={"email": email, "csrf_token": csrf_token(client)})
    assert response.status_code == 200
    smtp.wait_for(email)


ENCODED_WORD = re.compile(r"=\?.*\?=", re.DOTALL)
CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")

# Random text, and text built like an address (with the awkward parts mixed in), so that
# both the refusals and the acceptances are exercised.
_atoms = st.sampled_from(
    ["a", "Ann", "x.y", "=?", "?=", "utf-8", "?q?", "\r", "\n", "\x00", "\u00e9", "-", "+",
     "\"", " ", "..", "xn--", "\u200b", "\u0130", "\ufb01", "a" * 40]
)  # fmt: skip
_parts = st.lists(st.one_of(_atoms, st.text(max_size=8)), max_size=6).map("".join)
_domains = st.sampled_from(["example.com", "EXAMPLE.org", "b\u00fccher.de", "x.=?q?", "a" * 70])
addresses = st.one_of(
    st.text(max_size=300),
    st.builds(lambda local, domain: f"{local}@{domain}", _parts, _domains),
    st.builds(lambda local, domain: f"{local}@{domain}", st.text(min_size=1), st.text()),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(addresses)
def test_normalize_email_accepts_only_clean_addresses_and_refuses_only_with_invalid_input(
    raw: str,
) -> None:
    try:
        address = normalize_email(raw)
    except InvalidInput as exc:
        assert exc.message  # a message for the person who typed it
        return
    assert not CONTROLS.search(address) and "\r" not in address and "\n" not in address
    assert address.isascii()
    local, _, domain = address.rpartition("@")
    assert local and domain
    assert len(local.encode("utf-8")) <= 64
    assert not ENCODED_WORD.search(address)
    assert len(address) <= 254
    assert normalize_email(address) == address  # normalizing again changes nothing
