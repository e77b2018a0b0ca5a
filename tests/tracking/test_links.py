"""Tracked redirects: verified in constant time, logged, never charging, never off-site."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from newsletter.tracking.models import Click
from tests.tracking.conftest import clicks_written, reads_count

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


class TestRedirect:
    def test_redirects_to_the_story_and_sets_a_reading_cookie(self, client, sent_edition, session):
        path = sent_edition.links["ann@example.com"][0]
        response = client.get(path, headers={"User-Agent": BROWSER_UA})
        assert response.status_code == 302
        assert response.headers["Location"].startswith("/stories/tracked-story-number-")
        cookie = response.headers["Set-Cookie"]
        assert (
            cookie.startswith("bsd_reading=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
        )
        assert reads_count(session) == 0  # a redirect never charges

    def test_every_click_is_logged_with_a_bot_verdict(self, app, client, sent_edition, session):
        path = sent_edition.links["ann@example.com"][1]
        client.get(
            path, headers={"User-Agent": BROWSER_UA}, environ_base={"REMOTE_ADDR": "203.0.113.77"}
        )
        client.head(path, headers={"User-Agent": BROWSER_UA})
        client.get(path, headers={"User-Agent": "python-requests/2.32"})
        clicks_written(app)
        session.rollback()
        clicks = session.scalars(select(Click).order_by(Click.id)).all()
        assert [(c.method, c.bot, c.bot_reason) for c in clicks] == [
            ("GET", False, None),
            ("HEAD", True, "HEAD request"),
            ("GET", True, "scanner user agent (python-requests)"),
        ]
        assert clicks[0].ip_prefix == "203.0.113.0/24"
        assert clicks[0].edition_id == sent_edition.edition.id
        assert clicks[0].user_agent == BROWSER_UA

    @pytest.mark.parametrize(
        "bad",
        [
            "AAAAAAAAAAAAAAAAAAAAAA",  # well-formed, wrong MAC
            "not-a-token",
            "A" * 200,  # over-long
            "..%2F..%2Fetc%2Fpasswd",
            "%2F%2Fevil.example",
            "abc$def",
        ],
    )
    def test_forged_truncated_overlong_and_traversal_tokens_are_404(
        self, client, sent_edition, bad
    ):
        for method in (client.get, client.head):
            response = method(f"/r/{bad}")
            assert response.status_code == 404
            assert "Location" not in response.headers

    def test_truncated_and_altered_real_tokens_are_404(self, client, sent_edition):
        path = sent_edition.links["ann@example.com"][0]
        flipped = path[:-1] + ("A" if path[-1] != "A" else "B")
        for bad in (path[:-1], path[:-5], flipped, path + "A"):
            response = client.get(bad)
            assert response.status_code == 404
            assert "Location" not in response.headers

    def test_a_token_for_a_story_outside_the_edition_is_404(
        self, app, client, sent_edition, session
    ):
        from newsletter.readers.models import Reader
        from newsletter.tokens import LinkSigner

        reader = session.scalar(select(Reader).where(Reader.email == "ann@example.com"))
        token = LinkSigner(app.config["SECRET_KEY"]).sign(
            reader.id, sent_edition.edition.id, 999999
        )
        assert client.get(f"/r/{token}").status_code == 404

    def test_a_token_signed_with_another_secret_is_404(self, client, sent_edition, session):
        from newsletter.readers.models import Reader
        from newsletter.tokens import LinkSigner

        reader = session.scalar(select(Reader).where(Reader.email == "ann@example.com"))
        story_id = sent_edition.edition.stories[0].story_id
        token = LinkSigner("some other secret").sign(reader.id, sent_edition.edition.id, story_id)
        assert client.get(f"/r/{token}").status_code == 404
