"""Asking for a sign-in link again: a fresh link unless one went out a minute ago, a page
whose words are true either way, a 429 that says how long to wait, and the back button
after signing in."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine

from newsletter.db import utcnow
from tests.conftest import csrf_token, links_in
from tests.helpers import path_of, request_signin_link, sign_in, subscribe


def ask(client, email: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/signin", data={"email": email, "csrf_token": csrf_token(client, "/signin")}
    )


def sign_out(client) -> None:  # type: ignore[no-untyped-def]
    client.post("/signout", data={"csrf_token": csrf_token(client, "/account")})


def page_text(response) -> str:  # type: ignore[no-untyped-def]
    return re.sub(r'name="csrf_token" value="[^"]+"', "", response.get_data(as_text=True))


class TestAskingAgain:
    def test_sign_in_sign_out_and_ask_again_within_5_minutes_gets_a_working_link(
        self, client, smtp
    ):
        subscribe(client, smtp, "ann@example.com")
        sign_in(client, smtp, "ann@example.com")
        sign_out(client)
        before = len(smtp.messages_to("ann@example.com"))

        with time_machine.travel(utcnow() + timedelta(seconds=20)):
            response = ask(client, "ann@example.com")
            assert response.status_code == 200
            message = smtp.wait_for("ann@example.com", count=before + 1)[-1]
            path = path_of(links_in(message, "/signin/")[0])
            signed = client.post(path, data={"csrf_token": csrf_token(client, path)})
            assert signed.status_code == 303
            assert client.get("/api/me").json["email"] == "ann@example.com"

    def test_the_paywall_sign_in_after_signing_out_sends_a_new_link(self, client, smtp):
        subscribe(client, smtp, "ann@example.com")
        sign_in(client, smtp, "ann@example.com")
        sign_out(client)
        before = len(smtp.messages_to("ann@example.com"))
        form = {"email": "ann@example.com", "next": "/stories/x"}
        client.post("/signin", data={**form, "csrf_token": csrf_token(client, "/signin?next=/x")})
        message = smtp.wait_for("ann@example.com", count=before + 1)[-1]
        path = path_of(links_in(message, "/signin/")[0])
        response = client.post(path, data={"csrf_token": csrf_token(client, path)})
        assert response.headers["Location"] == "/stories/x"

    def test_twice_within_a_minute_sends_one_email_whose_link_still_works(self, client, smtp):
        subscribe(client, smtp, "ann@example.com")
        start = utcnow()
        first_page = ask(client, "ann@example.com")
        # Confirmation and welcome, then the sign-in email.
        [first] = smtp.wait_for("ann@example.com", count=3)[2:]

        with time_machine.travel(start + timedelta(seconds=30)):
            second_page = ask(client, "ann@example.com")
        assert len(smtp.messages_to("ann@example.com")) == 3  # no second sign-in email

        # The page said the same both times, and what it says is true: at most one a
        # minute, so use the link in the email already sent.
        assert page_text(first_page) == page_text(second_page)
        text = page_text(second_page)
        assert "at most one sign-in link a minute" in text
        assert "use the link in that email" in text

        # A minute on, asking again sends a fresh link.
        with time_machine.travel(start + timedelta(seconds=61)):
            ask(client, "ann@example.com")
            assert len(smtp.wait_for("ann@example.com", count=4)) == 4
            # And the link of the email the page pointed to works.
            path = path_of(links_in(first, "/signin/")[0])
            response = client.post(path, data={"csrf_token": csrf_token(client, path)})
            assert response.status_code == 303

    def test_the_wording_is_the_same_for_an_unknown_address(self, client, smtp):
        subscribe(client, smtp, "ann@example.com")
        known = ask(client, "ann@example.com")
        again = ask(client, "ann@example.com")  # within the minute: nothing sent
        unknown = ask(client, "nobody@example.com")
        assert known.status_code == again.status_code == unknown.status_code == 200

        def neutral(response) -> str:  # type: ignore[no-untyped-def]
            return (
                page_text(response)
                .replace("ann@example.com", "X")
                .replace("nobody@example.com", "X")
            )

        assert neutral(known) == neutral(again) == neutral(unknown)
        assert smtp.messages_to("nobody@example.com") == []


class TestTooManyRequests:
    @pytest.fixture
    def app_settings(self):
        return {"RATE_LIMIT_PER_ADDRESS": "2/3600"}

    def test_the_429_page_says_how_long_to_wait_as_retry_after_does(self, client, smtp):
        for _ in range(2):
            assert ask(client, "ann@example.com").status_code == 200
        response = ask(client, "ann@example.com")

        assert response.status_code == 429
        retry_after = int(response.headers["Retry-After"])
        text = response.get_data(as_text=True)
        assert "wait a little" not in text
        match = re.search(r"try again in (?:(\d+) hours?(?: and )?)?(?:(\d+) minutes?)?", text)
        assert match and (match.group(1) or match.group(2)), text
        stated = (int(match.group(1) or 0) * 60 + int(match.group(2) or 0)) * 60
        # Minutes rounded up: trying again at the stated time works, and not much later.
        assert retry_after <= stated < retry_after + 60


@pytest.mark.parametrize(
    ("seconds", "words"),
    [
        (1, "1 second"),
        (45, "45 seconds"),
        (60, "1 minute"),
        (61, "2 minutes"),
        (2952, "50 minutes"),
        (3600, "1 hour"),
        (3660, "1 hour and 1 minute"),
        (7300, "2 hours and 2 minutes"),
    ],
)
def test_wait_in_words(seconds: int, words: str) -> None:
    from newsletter.ratelimit import wait_in_words

    assert wait_in_words(seconds) == words


class TestBackButton:
    def test_a_signed_in_reader_opening_the_used_link_lands_on_the_account(self, client, smtp):
        subscribe(client, smtp, "ann@example.com")
        path = request_signin_link(client, smtp, "ann@example.com")
        button_page = client.get(path)
        assert button_page.headers["Cache-Control"] == "no-store"  # back asks again
        client.post(path, data={"csrf_token": csrf_token(client, path)})

        back = client.get(path)  # the browser's back button

        assert back.status_code == 303
        assert back.headers["Location"] == "/account"
        resubmit = client.post(path, data={"csrf_token": csrf_token(client, "/account")})
        assert resubmit.headers["Location"] == "/account"

    def test_signed_out_the_used_link_still_explains_itself(self, client, smtp):
        subscribe(client, smtp, "ann@example.com")
        path = request_signin_link(client, smtp, "ann@example.com")
        client.post(path, data={"csrf_token": csrf_token(client, path)})
        sign_out(client)
        response = client.get(path)
        assert response.status_code == 400
        assert "already been used" in response.get_data(as_text=True)
