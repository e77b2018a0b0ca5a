"""The account page, /api/me, and unsubscribe."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from newsletter.readers.models import Consent, ConsentKind, Reader, ReaderStatus
from tests.conftest import csrf_token
from tests.helpers import subscribe, subscribed_and_signed_in


class TestApiMe:
    def test_401_when_not_signed_in(self, client):
        response = client.get("/api/me")
        assert response.status_code == 401
        assert response.json == {"error": "not signed in"}

    def test_payload_matches_the_interface(self, client, smtp):
        subscribed_and_signed_in(client, smtp, "ann@example.com", timezone="Pacific/Auckland")
        assert client.get("/api/me").json == {
            "email": "ann@example.com",
            "status": "confirmed",
            "plan": "free",
            "free_stories_per_month": 10,
            "free_stories_left": 10,
            "trial_ends_at": None,
            "delivery_hour": 6,
            "timezone": "Pacific/Auckland",
        }


class TestAccount:
    def test_account_needs_sign_in(self, client):
        response = client.get("/account")
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/signin")

    def test_shows_status_plan_and_delivery(self, client, smtp):
        subscribed_and_signed_in(client, smtp, "ann@example.com", timezone="Europe/Paris")
        page = client.get("/account").get_data(as_text=True)
        assert "ann@example.com" in page
        assert "Subscribed" in page
        assert "06:00, Europe/Paris" in page
        assert "10 of 10 this month" in page

    def test_change_delivery_hour_and_timezone(self, client, session, smtp):
        subscribed_and_signed_in(client, smtp, "ann@example.com")
        token = csrf_token(client, "/account")
        response = client.post(
            "/account/delivery",
            data={"delivery_hour": "7", "timezone": "America/Los_Angeles", "csrf_token": token},
        )
        assert response.status_code == 303
        assert "07:00, America/Los_Angeles" in client.get("/account").get_data(as_text=True)
        me = client.get("/api/me").json
        assert (me["delivery_hour"], me["timezone"]) == (7, "America/Los_Angeles")

    @pytest.mark.parametrize(
        ("hour", "tz", "message"),
        [
            ("24", "UTC", "from 0 to 23"),
            ("-1", "UTC", "from 0 to 23"),
            ("seven", "UTC", "from 0 to 23"),
            ("7", "Mars/Base", "IANA name"),
            ("7", "EST5EDT; DROP TABLE readers", "IANA name"),
            ("7", "../../etc/passwd", "IANA name"),
        ],
    )
    def test_bad_values_are_refused_and_nothing_changes(
        self, client, session, smtp, hour, tz, message
    ):
        subscribed_and_signed_in(client, smtp, "ann@example.com")
        token = csrf_token(client, "/account")
        response = client.post(
            "/account/delivery", data={"delivery_hour": hour, "timezone": tz, "csrf_token": token}
        )
        assert response.status_code == 400
        assert message in response.get_data(as_text=True)
        reader = session.scalar(select(Reader))
        assert (reader.delivery_hour, reader.timezone) == (6, "UTC")

    def test_change_without_csrf_is_refused(self, client, session, smtp):
        subscribed_and_signed_in(client, smtp, "ann@example.com")
        response = client.post("/account/delivery", data={"delivery_hour": "9", "timezone": "UTC"})
        assert response.status_code == 400
        assert session.scalar(select(Reader.delivery_hour)) == 6

    def test_unsubscribe_and_resubscribe_from_the_account(self, client, session, smtp):
        subscribed_and_signed_in(client, smtp, "ann@example.com")
        client.post("/account/unsubscribe", data={"csrf_token": csrf_token(client, "/account")})
        assert client.get("/api/me").json["status"] == "unsubscribed"
        client.post("/account/resubscribe", data={"csrf_token": csrf_token(client, "/account")})
        assert client.get("/api/me").json["status"] == "confirmed"
        kinds = [c.kind for c in session.scalars(select(Consent).order_by(Consent.id))]
        assert kinds[-2:] == [ConsentKind.UNSUBSCRIBE, ConsentKind.RESUBSCRIBE]


class TestUnsubscribeLink:
    def _link(self, app, session) -> str:  # type: ignore[no-untyped-def]
        from newsletter.readers.services import unsubscribe_url

        reader = session.scalar(select(Reader))
        with app.test_request_context():
            return unsubscribe_url(reader).removeprefix("http://localhost")

    def test_get_shows_a_button_and_changes_nothing(self, app, client, session, smtp):
        subscribe(client, smtp, "ann@example.com")
        path = self._link(app, session)
        for _ in range(3):
            response = client.get(path)
            assert response.status_code == 200
            assert "<button" in response.get_data(as_text=True)
        client.head(path)
        session.rollback()  # ends the read snapshot: see rows committed since
        assert session.scalar(select(Reader.status)) == ReaderStatus.CONFIRMED

    def test_one_click_post_unsubscribes_without_cookie_or_csrf(self, app, client, session, smtp):
        subscribe(client, smtp, "ann@example.com")
        path = self._link(app, session)
        mail_client = app.test_client()  # no cookies, no CSRF token: what a mailbox provider sends
        response = mail_client.post(path, data={"List-Unsubscribe": "One-Click"})
        assert response.status_code == 200
        assert "Location" not in response.headers
        assert "Set-Cookie" not in response.headers
        session.rollback()  # ends the read snapshot: see rows committed since
        assert session.scalar(select(Reader.status)) == ReaderStatus.UNSUBSCRIBED
        assert mail_client.post(path, data={"List-Unsubscribe": "One-Click"}).status_code == 200

    def test_link_does_not_expire(self, app, client, session, smtp):
        from datetime import timedelta

        import time_machine

        from newsletter.db import utcnow

        subscribe(client, smtp, "ann@example.com")
        path = self._link(app, session)
        with time_machine.travel(utcnow() + timedelta(days=800)):
            assert app.test_client().post(path).status_code == 200
        session.rollback()  # ends the read snapshot: see rows committed since
        assert session.scalar(select(Reader.status)) == ReaderStatus.UNSUBSCRIBED

    def test_forged_token_is_refused(self, app, client, session, smtp):
        subscribe(client, smtp, "ann@example.com")
        path = self._link(app, session)
        assert app.test_client().post(path[:-2] + "zz").status_code == 400
        assert app.test_client().post("/unsubscribe/1").status_code == 400
        session.rollback()  # ends the read snapshot: see rows committed since
        assert session.scalar(select(Reader.status)) == ReaderStatus.CONFIRMED
