"""A free reader in Chromium reads stories from the email's links until the paywall."""

from __future__ import annotations

import pytest

from tests.tracking.conftest import reads_count, send_edition

pytestmark = pytest.mark.browser


@pytest.fixture
def app_settings():  # type: ignore[no-untyped-def]
    return {"FREE_STORIES_PER_MONTH": 2}


def test_free_reader_reads_meets_the_paywall_and_rereads(live_server, smtp, browser_page):
    app = live_server.app
    session = app.extensions["db"].sessionmaker()
    try:
        sent = send_edition(app, session, smtp)
        links = sent.links["ann@example.com"]
        assert all(link.startswith(live_server.url + "/r/") for link in links)
        page = browser_page

        page.goto(links[0])
        page.wait_for_selector("article[data-read=charged]")
        assert page.locator("#meter").inner_text() == "1 of 2 free stories left this month"
        page.get_by_role("heading", name="Analysis").wait_for()

        page.goto(links[1])
        page.wait_for_selector("article[data-read=charged]")
        assert page.locator("#meter").inner_text() == "0 of 2 free stories left this month"
        assert reads_count(session) == 2

        page.goto(links[2])
        # No billing configured: the limit and the reset date, and a way to sign in.
        page.get_by_role("heading", name="You've read your 2 free stories this month").wait_for()
        assert page.locator("#resets-on").is_visible()
        assert page.locator("#paywall").get_by_role("link", name="Sign in").is_visible()
        assert "trial" not in page.locator("#paywall").inner_text().lower()
        assert page.get_by_role("heading", name="Analysis").count() == 0

        # A story already read this month opens in full, and costs nothing.
        page.goto(links[0])
        page.get_by_role("heading", name="Analysis").wait_for()
        assert page.locator("#meter").inner_text() == "0 of 2 free stories left this month"
        assert reads_count(session) == 2
    finally:
        session.close()
