"""Security headers, rate limits, health check, error pages."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from newsletter.readers.models import Reader
from tests.conftest import csrf_token


class TestHeaders:
    def test_pages_carry_csp_frame_ancestors_and_referrer_policy(self, client):
        response = client.get("/")
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp
        assert "script-src 'self'" in csp
        assert "frame-ancestors 'none'" in csp
        assert response.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
        assert response.headers["X-Content-Type-Options"] == "nosniff"

    def test_no_inline_scripts_on_the_signup_page(self, client):
        page = client.get("/").get_data(as_text=True)
        assert "<script>" not in page and "onclick" not in page


class TestHealth:
    def test_healthz_answers_ok_when_the_database_does(self, client):
        response = client.get("/healthz")
        assert response.status_code == 200
        assert response.json == {"status": "ok"}

    def test_healthz_answers_503_when_the_database_does_not(self, tmp_path, smtp):
        from tests.conftest import make_app

        app = make_app("postgresql+psycopg://nobody@127.0.0.1:1/none", tmp_path, smtp)
        response = app.test_client().get("/healthz")
        assert response.status_code == 503
        assert response.json["status"] == "error"


class TestRateLimits:
    @pytest.fixture
    def app_settings(self):
        return {"RATE_LIMIT_PER_IP": "5/3600", "RATE_LIMIT_PER_ADDRESS": "2/3600"}

    def test_per_address_limit_on_signup(self, client, smtp):
        token = csrf_token(client)
        codes = [
            client.post(
                "/signup", data={"email": "ann@example.com", "csrf_token": token}
            ).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 429]
        other = client.post("/signup", data={"email": "bob@example.com", "csrf_token": token})
        assert other.status_code == 200

    def test_per_ip_limit_on_signup_counts_bad_input_too(self, client, session, smtp):
        token = csrf_token(client)
        codes = [
            client.post("/signup", data={"email": f"x{n}", "csrf_token": token}).status_code
            for n in range(5)
        ]
        assert codes == [400] * 5
        response = client.post("/signup", data={"email": "ann@example.com", "csrf_token": token})
        assert response.status_code == 429
        assert "Too many requests" in response.get_data(as_text=True)
        assert int(response.headers["Retry-After"]) > 0
        assert session.scalar(select(func.count()).select_from(Reader)) == 0

    def test_per_address_limit_on_signin(self, client, smtp):
        token = csrf_token(client, "/signin")
        codes = [
            client.post(
                "/signin", data={"email": "ann@example.com", "csrf_token": token}
            ).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 429]

    def test_limits_are_shared_between_app_instances(self, app, database_url, tmp_path, smtp):
        # Two app objects stand for two gunicorn workers: they share the database's counts.
        from tests.conftest import make_app

        other = make_app(
            database_url,
            tmp_path,
            smtp,
            RATE_LIMIT_PER_IP="5/3600",
            RATE_LIMIT_PER_ADDRESS="2/3600",
        )
        a, b = app.test_client(), other.test_client()
        assert (
            a.post(
                "/signup", data={"email": "ann@example.com", "csrf_token": csrf_token(a)}
            ).status_code
            == 200
        )
        assert (
            b.post(
                "/signup", data={"email": "ann@example.com", "csrf_token": csrf_token(b)}
            ).status_code
            == 200
        )
        assert (
            a.post(
                "/signup", data={"email": "ann@example.com", "csrf_token": csrf_token(a)}
            ).status_code
            == 429
        )
        other.extensions["db"].dispose()


class TestErrors:
    def test_unknown_page_is_a_friendly_404(self, client):
        response = client.get("/no/such/page")
        assert response.status_code == 404
        assert "find that page" in response.get_data(as_text=True)

    def test_api_errors_are_json(self, client):
        response = client.get("/api/nothing")
        assert response.status_code == 404
        assert response.json == {"error": "We couldn't find that page."}
