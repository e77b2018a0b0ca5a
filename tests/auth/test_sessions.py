"""Sessions end server-side: sign-out, "sign out everywhere", a removed staff role and
the staff idle limit, each seen through a copied session cookie."""

from __future__ import annotations

from datetime import timedelta

import time_machine
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from newsletter.db import utcnow
from newsletter.readers.models import Reader
from tests.conftest import csrf_token
from tests.helpers import sign_in, subscribe, subscribed_and_signed_in
from tests.smtp_server import SmtpServer

COOKIE = "bsd_session"


def copy_of(app: Flask, client: FlaskClient) -> FlaskClient:
    """Another browser holding a copy of `client`'s session cookie, as a thief would."""
    value = client.get_cookie(COOKIE)
    assert value is not None, "not signed in"
    other = app.test_client()
    other.set_cookie(COOKIE, value.value)
    return other


def make_staff_by_cli(app: Flask, email: str) -> None:
    result = app.test_cli_runner().invoke(args=["staff", "add", email])
    assert result.exit_code == 0, result.output


def signed_in_staff(app: Flask, client: FlaskClient, smtp: SmtpServer, email: str) -> None:
    subscribe(client, smtp, email)
    make_staff_by_cli(app, email)
    sign_in(client, smtp, email)
    assert client.get("/admin/").status_code == 200


class TestSignOutEndsTheSession:
    def test_a_copied_reader_cookie_stops_working_after_sign_out(self, app, client, smtp):
        subscribed_and_signed_in(client, smtp, "ann@example.com")
        thief = copy_of(app, client)
        assert thief.get("/api/me").json["email"] == "ann@example.com"  # the copy works

        response = client.post("/signout", data={"csrf_token": csrf_token(client, "/account")})

        assert response.status_code == 303
        assert client.get("/api/me").status_code == 401
        assert thief.get("/api/me").status_code == 401
        assert thief.get("/account").status_code == 302  # to sign-in
        # Signing in again works, and the old copy stays dead.
        sign_in(client, smtp, "ann@example.com")
        assert client.get("/api/me").status_code == 200
        assert thief.get("/api/me").status_code == 401

    def test_a_copied_reader_cookie_stops_working_after_sign_out_everywhere(
        self, app, client, smtp
    ):
        subscribed_and_signed_in(client, smtp, "ann@example.com")
        thief = copy_of(app, client)
        account = client.get("/account").get_data(as_text=True)
        assert "Sign out everywhere" in account

        response = client.post(
            "/signout/everywhere", data={"csrf_token": csrf_token(client, "/account")}
        )

        assert response.status_code == 303
        assert "signed out on every browser" in client.get("/").get_data(as_text=True)
        assert thief.get("/api/me").status_code == 401
        assert client.get("/api/me").status_code == 401

    def test_sign_out_everywhere_needs_a_session_and_its_csrf_token(self, app, client, smtp):
        assert client.post("/signout/everywhere").status_code in (302, 400)
        subscribed_and_signed_in(client, smtp, "ann@example.com")
        assert client.post("/signout/everywhere", data={"csrf_token": "forged"}).status_code == 400
        assert client.get("/api/me").status_code == 200

    def test_sign_out_in_one_browser_ends_the_sessions_of_the_others(self, app, smtp):
        phone, laptop = app.test_client(), app.test_client()
        subscribe(phone, smtp, "ann@example.com")
        sign_in(phone, smtp, "ann@example.com")
        sign_in(laptop, smtp, "ann@example.com")
        laptop.post("/signout", data={"csrf_token": csrf_token(laptop, "/account")})
        assert phone.get("/api/me").status_code == 401

    def test_a_copied_staff_cookie_stops_working_after_sign_out(self, app, client, smtp):
        signed_in_staff(app, client, smtp, "editor@example.com")
        thief = copy_of(app, client)
        assert thief.get("/admin/").status_code == 200

        client.post("/signout", data={"csrf_token": csrf_token(client, "/account")})

        assert thief.get("/admin/").status_code == 404
        assert thief.get("/api/me").status_code == 401

    def test_a_copied_staff_cookie_stops_working_after_sign_out_everywhere(self, app, client, smtp):
        signed_in_staff(app, client, smtp, "editor@example.com")
        thief = copy_of(app, client)
        client.post("/signout/everywhere", data={"csrf_token": csrf_token(client, "/account")})
        assert thief.get("/admin/").status_code == 404
        assert client.get("/admin/").status_code == 404

    def test_sign_out_drops_this_browsers_reading_cookie(self, app, client, smtp):
        subscribed_and_signed_in(client, smtp, "ann@example.com")
        client.set_cookie("bsd_reading", "anything")
        response = client.post("/signout", data={"csrf_token": csrf_token(client, "/account")})
        cleared = [h for h in response.headers.getlist("Set-Cookie") if "bsd_reading=" in h]
        assert cleared and "Max-Age=0" in cleared[0]
        assert client.get_cookie("bsd_reading") is None


class TestStaffRole:
    def test_a_removed_staff_role_ends_admin_access_on_the_next_request(
        self, app, client, session, smtp
    ):
        signed_in_staff(app, client, smtp, "editor@example.com")
        assert "Admin" in client.get("/account").get_data(as_text=True)

        # As a CLI or another staff member would: the row changes, the cookie does not.
        session.scalar(
            select(Reader).where(Reader.email_key == "editor@example.com")
        ).is_staff = False
        session.commit()

        assert client.get("/admin/").status_code == 404
        assert client.get("/admin/readers").status_code == 404
        account = client.get("/account")
        assert account.status_code == 200  # still signed in as a reader
        assert ">Admin<" not in account.get_data(as_text=True)


class TestStaffIdleLimit:
    def test_an_idle_staff_session_ends_while_a_reader_session_of_the_same_age_works(
        self, app, smtp
    ):
        staff, reader = app.test_client(), app.test_client()
        signed_in_staff(app, staff, smtp, "editor@example.com")
        subscribed_and_signed_in(reader, smtp, "ann@example.com")
        idle = app.config["STAFF_IDLE_MINUTES"]
        assert idle == 60  # the default

        with time_machine.travel(utcnow() + timedelta(minutes=idle + 1)):
            assert reader.get("/api/me").status_code == 200
            assert staff.get("/admin/").status_code == 404
            assert staff.get("/api/me").status_code == 401  # the whole session ended

    def test_a_staff_session_in_use_stays_open(self, app, client, smtp):
        signed_in_staff(app, client, smtp, "editor@example.com")
        start = utcnow()
        for step in range(1, 4):  # every 40 minutes for two hours
            with time_machine.travel(start + timedelta(minutes=40 * step)):
                assert client.get("/admin/").status_code == 200, step

    def test_the_idle_limit_is_configurable(self, app, database_url, tmp_path, smtp):
        from tests.conftest import make_app

        short = make_app(database_url, tmp_path, smtp, STAFF_IDLE_MINUTES=5)
        try:
            client = short.test_client()
            signed_in_staff(short, client, smtp, "editor@example.com")
            with time_machine.travel(utcnow() + timedelta(minutes=6)):
                assert client.get("/admin/").status_code == 404
        finally:
            short.extensions["click_log"].close()
            short.extensions["db"].dispose()
