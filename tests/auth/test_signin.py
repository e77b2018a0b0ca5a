"""Sign-in by email link: single use, scanner-safe, expiring."""

from __future__ import annotations

import base64
import html
import re
from datetime import timedelta

import time_machine

from newsletter.db import utcnow
from tests.conftest import csrf_token, links_in
from tests.helpers import path_of, request_signin_link, sign_in, subscribe


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
        # Signed in, a used link leads to the account (tests/auth/test_signin_again.py);
        # anyone else is told it is used up.
        other = client.application.test_client()
        again = other.post(path, data={"csrf_token": csrf_token(other, "/signin")})
        assert again.status_code == 400
        assert "already been used" in again.get_data(as_text=True)
        assert other.get("/api/me").status_code == 401

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
        for n, target in enumerate(targets, start=1):
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


_NEXT_FIELD = re.compile(r'<input type="hidden" name="next" value="([^"]*)">')


def signin_from(client, smtp, start: str, email: str = "ann@example.com") -> str:  # type: ignore[no-untyped-def]
    """Open the sign-in page at `start` (e.g. from the paywall's link), submit its form as
    a browser would, and return the path of the emailed link."""
    before = len(smtp.messages_to(email))
    page = client.get(start).get_data(as_text=True)
    form = {"email": email, "csrf_token": csrf_token(client, start)}
    hidden = _NEXT_FIELD.search(page)
    if hidden:
        form["next"] = html.unescape(hidden.group(1))
    assert client.post("/signin", data=form).status_code == 200
    message = smtp.wait_for(email, count=before + 1)[-1]
    return path_of(links_in(message, "/signin/")[0])


class TestSigninKeepsWhereTheReaderWasGoing:
    def test_the_emailed_link_lands_on_the_page_sign_in_was_asked_from(self, client, smtp):
        subscribe(client, smtp, "ann@example.com")
        path = signin_from(client, smtp, "/signin?next=/stories/rent-bill-clears-key-hurdle")

        assert client.get(path).status_code == 200  # the button page, as before
        response = client.post(path, data={"csrf_token": csrf_token(client, path)})

        assert response.status_code == 303
        assert response.headers["Location"] == "/stories/rent-bill-clears-key-hurdle"
        assert client.get("/api/me").json["email"] == "ann@example.com"

    def test_an_off_site_next_lands_on_the_account(self, client, smtp):
        subscribe(client, smtp, "ann@example.com")
        page = client.get("/signin?next=//evil.example/stories/x").get_data(as_text=True)
        assert 'name="next"' not in page and "evil" not in page
        path = signin_from(client, smtp, "/signin?next=https://evil.example/stories/x")
        response = client.post(path, data={"csrf_token": csrf_token(client, path)})
        assert response.headers["Location"] == "/account"
        client.post("/signout", data={"csrf_token": csrf_token(client, "/account")})

        targets = (
            "https://evil.example/stories/x",
            "//evil.example/stories/x",
            "/\\evil.example",
            "\\\\evil.example",
            "javascript:alert(1)",
            "stories/x",
            "/stories/x\r\nSet-Cookie: a=b",
            "/" + "x" * 300,  # too long to carry in a link
        )
        for n, target in enumerate(targets, start=1):
            with time_machine.travel(utcnow() + timedelta(minutes=6 * n)):  # past the resend window
                # Posted as is, as a hand-made form would (the page itself never offers it).
                before = len(smtp.messages_to("ann@example.com"))
                form = {"email": "ann@example.com", "next": target}
                client.post("/signin", data={**form, "csrf_token": csrf_token(client, "/signin")})
                message = smtp.wait_for("ann@example.com", count=before + 1)[-1]
                path = path_of(links_in(message, "/signin/")[0])
                response = client.post(path, data={"csrf_token": csrf_token(client, path)})
                assert response.status_code == 303
                assert response.headers["Location"] == "/account", target
                client.post("/signout", data={"csrf_token": csrf_token(client, "/account")})

    def test_the_next_in_the_link_cannot_be_changed(self, client, smtp):
        subscribe(client, smtp, "ann@example.com")
        path = signin_from(client, smtp, "/signin?next=/stories/x")
        token = path.rsplit("/", 1)[1]
        payload, rest = token.split(".", 1)
        decoded = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        forged = base64.urlsafe_b64encode(decoded.replace(b"/stories/x", b"/stories/y")).rstrip(
            b"="
        )
        forged_path = f"/signin/{forged.decode()}.{rest}"

        response = client.post(forged_path, data={"csrf_token": csrf_token(client, "/signin")})

        assert response.status_code == 400
        assert client.get("/api/me").status_code == 401
        # A `next` posted with the real link is not read either: the link says where to go.
        response = client.post(
            path, data={"csrf_token": csrf_token(client, path), "next": "/stories/elsewhere"}
        )
        assert response.headers["Location"] == "/stories/x"
