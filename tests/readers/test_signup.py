"""Signup with double opt-in, against a real SMTP server, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from sqlalchemy import func, select

from newsletter.db import utcnow
from newsletter.readers.models import Consent, ConsentKind, Reader, ReaderStatus
from newsletter.readers.services import CONSENT_WORDING
from tests.conftest import csrf_token, links_in


def signup(client, email: str, timezone: str = "Europe/Paris", **headers):  # type: ignore[no-untyped-def]
    token = csrf_token(client)
    return client.post(
        "/signup",
        data={"email": email, "timezone": timezone, "csrf_token": token},
        headers=headers,
    )


def reader_count(session) -> int:  # type: ignore[no-untyped-def]
    return session.scalar(select(func.count()).select_from(Reader))


class TestSignup:
    def test_new_address_gets_a_confirmation_email_and_a_pending_row(self, client, session, smtp):
        response = signup(client, "Ann.Lee@Example.COM")
        assert response.status_code == 200
        assert "Check your inbox" in response.get_data(as_text=True)

        reader = session.scalar(select(Reader))
        assert reader.email == "Ann.Lee@example.com"  # domain lower-cased, local part kept
        assert reader.status == ReaderStatus.PENDING
        assert reader.timezone == "Europe/Paris"
        assert reader.delivery_hour == 6

        [message] = smtp.wait_for("Ann.Lee@example.com")
        assert message["Subject"] == "Confirm your Both Sides Daily subscription"
        [link] = links_in(message, "/confirm/")
        assert link.startswith("http://localhost/confirm/")

    def test_consent_is_recorded_with_wording_ip_and_user_agent(self, client, session, smtp):
        signup(client, "ann@example.com", **{"User-Agent": "TestBrowser/1.0"})
        consent = session.scalar(select(Consent))
        assert consent.kind == ConsentKind.SIGNUP
        assert consent.wording == CONSENT_WORDING
        assert consent.ip == "127.0.0.1"
        assert consent.user_agent == "TestBrowser/1.0"
        assert abs(consent.created_at - utcnow()) < timedelta(minutes=1)

    def test_unknown_timezone_from_the_browser_falls_back_to_utc(self, client, session, smtp):
        signup(client, "ann@example.com", timezone="Mars/Olympus_Mons")
        assert session.scalar(select(Reader.timezone)) == "UTC"

    def test_confirmation_link_confirms_and_records_consent(self, client, session, smtp):
        signup(client, "ann@example.com")
        [link] = links_in(smtp.wait_for("ann@example.com")[0], "/confirm/")
        response = client.get(link.removeprefix("http://localhost"))
        assert response.status_code == 200
        assert "You're subscribed" in response.get_data(as_text=True)
        reader = session.scalar(select(Reader))
        assert reader.status == ReaderStatus.CONFIRMED
        assert reader.confirmed_at is not None
        kinds = [c.kind for c in session.scalars(select(Consent).order_by(Consent.id))]
        assert kinds == [ConsentKind.SIGNUP, ConsentKind.CONFIRM]

    def test_opening_the_confirmation_twice_is_harmless(self, client, session, smtp):
        signup(client, "ann@example.com")
        path = links_in(smtp.wait_for("ann@example.com")[0], "/confirm/")[0].removeprefix(
            "http://localhost"
        )
        assert client.get(path).status_code == 200
        assert client.get(path).status_code == 200
        assert session.scalar(select(func.count()).select_from(Consent)) == 2

    def test_known_address_gets_the_same_answer(self, client, session, smtp):
        first = signup(client, "ann@example.com").get_data(as_text=True)
        again = signup(client, "ANN@example.com").get_data(as_text=True)
        strip = lambda page: page.replace("ANN@example.com", "ann@example.com")  # noqa: E731
        assert strip(again) == strip(first)
        assert reader_count(session) == 1

    def test_at_most_one_confirmation_email_per_few_minutes(self, client, session, smtp):
        signup(client, "ann@example.com")
        signup(client, "ann@example.com")
        signup(client, "ann@example.com")
        smtp.wait_for("ann@example.com")
        assert len(smtp.messages_to("ann@example.com")) == 1
        with time_machine.travel(utcnow() + timedelta(minutes=6)):
            signup(client, "ann@example.com")
        assert len(smtp.wait_for("ann@example.com", count=2)) == 2

    def test_confirmed_reader_signing_up_again_gets_a_sign_in_link_not_a_new_opt_in(
        self, client, session, smtp
    ):
        signup(client, "ann@example.com")
        client.get(
            links_in(smtp.wait_for("ann@example.com")[0], "/confirm/")[0].removeprefix(
                "http://localhost"
            )
        )
        signup(client, "ann@example.com")
        # Confirmation, welcome, then the sign-in link.
        messages = smtp.wait_for("ann@example.com", count=3)
        assert messages[1]["Subject"].startswith("Welcome to Both Sides Daily")
        assert messages[2]["Subject"] == "You're already subscribed to Both Sides Daily"
        assert links_in(messages[2], "/signin/")
        assert session.scalar(select(Reader.status)) == ReaderStatus.CONFIRMED


class TestPendingReaders:
    def test_pending_readers_are_not_in_the_audience(self, client, session, smtp):
        from newsletter.readers.services import audience_query

        signup(client, "pending@example.com")
        signup(client, "confirmed@example.com")
        link = links_in(smtp.wait_for("confirmed@example.com")[0], "/confirm/")[0]
        client.get(link.removeprefix("http://localhost"))
        emails = [r.email for r in session.scalars(audience_query())]
        assert emails == ["confirmed@example.com"]


HOSTILE = [
    ("", "enter your email"),
    ("not-an-address", "doesn't look like an email address"),
    ("ann@", "doesn't look like an email address"),
    ("@example.com", "doesn't look like an email address"),
    ("ann@example.com\r\nBcc: victim@example.com", "line breaks or control characters"),
    ("ann@example.com\nX-Injected: 1", "line breaks or control characters"),
    ("ann\x00@example.com", "such as a NUL byte"),  # refused before the view (web.py)
    ("a" * 250 + "@example.com", "at most 254 characters"),
    ("ann@exa mple.com", "doesn't look like an email address"),
    ("<script>@example.com", "doesn't look like an email address"),
    ("ann@localhost", "doesn't look like an email address"),
]


class TestBadInput:
    @pytest.mark.parametrize(("email", "message"), HOSTILE)
    def test_refused_with_a_clear_message_no_row_no_email(
        self, client, session, smtp, email, message
    ):
        response = signup(client, email)
        assert response.status_code == 400
        assert message in response.get_data(as_text=True).replace("&#39;", "'")
        assert reader_count(session) == 0
        assert smtp.received == []

    def test_missing_csrf_token_is_refused_no_row_no_email(self, client, session, smtp):
        response = client.post("/signup", data={"email": "ann@example.com", "timezone": "UTC"})
        assert response.status_code == 400
        assert "form has expired" in response.get_data(as_text=True)
        assert reader_count(session) == 0
        assert smtp.received == []

    def test_forged_csrf_token_is_refused(self, client, session, smtp):
        csrf_token(client)
        response = client.post("/signup", data={"email": "ann@example.com", "csrf_token": "forged"})
        assert response.status_code == 400
        assert reader_count(session) == 0


class TestConfirmationLinks:
    def test_forged_link_gets_a_friendly_page_with_a_way_to_get_a_new_one(
        self, client, session, smtp
    ):
        signup(client, "ann@example.com")
        link = links_in(smtp.wait_for("ann@example.com")[0], "/confirm/")[0].removeprefix(
            "http://localhost"
        )
        forged = link[:-3] + ("AAA" if not link.endswith("AAA") else "BBB")
        response = client.get(forged)
        assert response.status_code == 400
        page = response.get_data(as_text=True)
        assert "This link doesn't work" in page
        assert "Get a new confirmation link" in page
        assert session.scalar(select(Reader.status)) == ReaderStatus.PENDING

    def test_expired_link_answers_410_and_confirms_nothing(self, client, session, smtp):
        signup(client, "ann@example.com")
        link = links_in(smtp.wait_for("ann@example.com")[0], "/confirm/")[0].removeprefix(
            "http://localhost"
        )
        with time_machine.travel(utcnow() + timedelta(days=4)):
            response = client.get(link)
        assert response.status_code == 410
        assert "expired" in response.get_data(as_text=True)
        assert session.scalar(select(Reader.status)) == ReaderStatus.PENDING

    def test_token_for_another_purpose_is_refused(self, app, client, session, smtp):
        from newsletter.tokens import Purpose, make_token

        signup(client, "ann@example.com")
        reader = session.scalar(select(Reader))
        with app.test_request_context():
            token = make_token(Purpose.SIGNIN, {"r": reader.id, "e": reader.email_key})
        assert client.get(f"/confirm/{token}").status_code == 400
        assert session.scalar(select(Reader.status)) == ReaderStatus.PENDING


class TestLandingPage:
    def test_shows_the_latest_stories_with_their_coverage(self, client, runner):
        assert client.get("/").get_data(as_text=True).count("/stories/") == 0
        assert runner.invoke(args=["demo"]).exit_code == 0
        page = client.get("/").get_data(as_text=True)
        assert "Latest stories" in page
        assert page.count('href="/stories/') == 6
        assert "outlets · Left" in page
