"""A newcomer in Chromium: sign up, confirm from the email, set the delivery hour on the
confirmed page, sign in, change it again."""

from __future__ import annotations

import pytest

from tests.conftest import links_in

pytestmark = pytest.mark.browser


def test_signup_confirm_signin_and_change_delivery_hour(live_server, smtp, browser_page):
    page = browser_page
    page.goto(live_server.url + "/")
    page.get_by_label("Your email address").fill("newcomer@example.com")
    page.get_by_role("button", name="Subscribe free").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()

    [confirmation] = smtp.wait_for("newcomer@example.com")
    [confirm_link] = links_in(confirmation, "/confirm/")
    assert confirm_link.startswith(live_server.url)
    page.goto(confirm_link)
    page.get_by_role("heading", name="You're subscribed").wait_for()
    # The browser's own time zone (set to Los Angeles for this context) was picked up.
    assert "America/Los_Angeles" in page.content()

    # The confirmed page sets the delivery time itself, by a POST: no second email.
    page.get_by_label("Send my email at").select_option(label="07:00")
    page.get_by_role("button", name="Save delivery time").click()
    page.get_by_text("Your email arrives at 07:00 America/Los_Angeles").wait_for()
    assert "at 07:00 (America/Los_Angeles)" in page.locator("#first-edition").inner_text()
    assert len(smtp.wait_for("newcomer@example.com", count=2)) == 2  # confirm + welcome

    page.goto(live_server.url + "/signin")
    page.get_by_label("Your email address").fill("newcomer@example.com")
    page.get_by_role("button", name="Email me a sign-in link").click()
    page.get_by_role("heading", name="Check your inbox").wait_for()

    signin_email = smtp.wait_for("newcomer@example.com", count=3)[2]
    [signin_link] = links_in(signin_email, "/signin/")
    page.goto(signin_link)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_role("heading", name="Your account").wait_for()
    assert page.locator("#delivery").inner_text() == "07:00, America/Los_Angeles"

    page.get_by_label("Send my email at").select_option(label="08:00")
    page.get_by_role("button", name="Save delivery time").click()
    page.get_by_text("Your email now arrives at 08:00 America/Los_Angeles").wait_for()
    assert page.locator("#delivery").inner_text() == "08:00, America/Los_Angeles"
