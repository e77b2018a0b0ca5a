"""Sign-in by email link: single use, scanner-safe, expiring."""

from __future__ import annotations

from datetime import timedelta

import time_machine

from newsletter.db import utcnow
from tests.conftest import csrf_token
from tests.helpers import request_signin_link, sign_in, subscribe


class TestSignin:
    def test_link_signs_in_after_pressing_the_button(self, client, smtp):
        subscribe(client, smtp, "ann@example.com")
        path = request_signin_link(client, smtp, "ann@example.com")
        page = client.get(path)
        assert page.status_code == 200
        assert "Sign in as ann@example.com?" in page.get_data(as_text=True)
        assert client.get("/api/me").status_code == 401  # the GET alone signs nobody in

        response = client.post(path, data={"csrf_token": csrf_token(client, path)})
        assert response.status_code == 303
        assert response.headers["Location"] == "/account"
        assert client.get("/api/me").json["email"] == "ann@example.com"

    def test_scanner_get_does_not_use_the_link_up(self, app, client, smtp):
        subscribe(client, smtp, "ann@example.com")
        path = request_signin_link(client, smtp, "ann@example.com")
        scanner = app.test_client()
        for _ in range(3):
            assert (
                scanner.get(
                    path, headers={"User-Agent": "Mozilla/5.0 (compatible; SafeLinks)"}
                ).status_code
                == 200
            )
            scanner.head(path)
        response = client.post(path, data={"csrf_token": csrf_token(client, path)})
        assert response.status_code == 303

    def test_link_works_once(self, client, smtp):
        subscribe(client, smtp, "ann@example.com")
        path = request_signin_link(client, smtp, "ann@example.com")
        token = csrf_token(client, path)
        assert client.post(path, data={"csrf_token": token}).status_code == 303
        again = client.post(path, data={"csrf_token": csrf_token(client, "/signin")})
        assert again.status_code == 400
        assert "already been used" in again.get_data(as_text=True)

    def test_link_expires_after_30_minutes(self, client, smtp):
        subscribe(client, smtp, "ann@example.com")
        path = request_signin_link(client, smtp, "ann@example.com")
        with time_machine.travel(utcnow() + timedelta(minutes=31)):
            response = client.get(path)
            assert response.status_code == 410
            assert "Get a new sign-in link" in response.get_data(as_text=True)
            token = csrf_token(client, "/signin")
            assert client.post(path, data={"csrf_token": token}).status_code == 410
        assert client.get("/api/me").status_code == 401

    def test_forged_and_truncated_links_are_refused(self, client, smtp):
        subscribe(client, smtp, "ann@example.com")
        path = request_signin_link(client, smtp, "ann@example.com")
        token = csrf_token(client, "/signin")
        for bad in (path[:-4], path + "x", "/signin/" + "A" * 600, "/signin/..%2F..%2Fetc"):
            assert client.get(bad).status_code in (400, 404)
            assert client.post(bad, data={"csrf_token": token}).status_code in (400, 404)
        assert client.get("/api/me").status_code == 401

    def test_unknown_address_gets_the_same_answer_and_no_email(self, client, smtp):
        subscribe(client, smtp, "ann@example.com")
        token = csrf_token(client, "/signin")
        known = client.post("/signin", data={"email": "ann@example.com", "csrf_token": token})
        unknown = client.post("/signin", data={"email": "nobody@example.com", "csrf_token": token})
        assert known.status_code == unknown.status_code == 200
        assert known.get_data(as_text=True).replace("ann@", "X@") == unknown.get_data(
            as_text=True
        ).replace("nobody@", "X@")
        assert smtp.messages_to("nobody@example.com") == []

    def test_pending_reader_gets_the_confirmation_again(self, client, smtp):
        client.post("/signup", data={"email": "ann@example.com", "csrf_token": csrf_token(client)})
        smtp.wait_for("ann@example.com")
        with time_machine.travel(utcnow() + timedelta(minutes=6)):
            client.post(
                "/signin",
                data={"email": "ann@example.com", "csrf_token": csrf_token(client, "/signin")},
            )
        messages = smtp.wait_for("ann@example.com", count=2)
        assert messages[1]["Subject"] == "Confirm your Both Sides Daily subscription"

    def test_sign_out(self, client, smtp):
        subscribe(client, smtp, "ann@example.com")
        sign_in(client, smtp, "ann@example.com")
        response = client.post("/signout", data={"csrf_token": csrf_token(client, "/account")})
        assert response.status_code == 303
        assert client.get("/api/me").status_code == 401

    def test_next_parameter_cannot_redirect_off_site(self, client, smtp):
        subscribe(client, smtp, "ann@example.com")
        targets = (
            "https://evil.example",
            "//evil.example",
            "/\\evil.example",
            "javascript:alert(1)",
        )
        for n, target in enumerate(targets):
            with time_machine.travel(utcnow() + timedelta(minutes=6 * n)):  # past the resend window
                path = request_signin_link(client, smtp, "ann@example.com")
                token = csrf_token(client, path)
                response = client.post(path, data={"csrf_token": token, "next": target})
                assert response.headers["Location"] == "/account"
                client.post("/signout", data={"csrf_token": csrf_token(client, "/account")})

    def test_session_cookie_is_httponly_and_samesite_lax(self, client, smtp):
        subscribe(client, smtp, "ann@example.com")
        path = request_signin_link(client, smtp, "ann@example.com")
        response = client.post(path, data={"csrf_token": csrf_token(client, path)})
        cookie = response.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Lax" in cookie
