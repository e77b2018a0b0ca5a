"""A staff member in Chromium: edits the edition template, watches both previews change,
publishes, sends themselves a test through the SMTP server, and rolls back."""

from __future__ import annotations

import pytest

from newsletter.auth.session import session_values
from tests.admin.conftest import STAFF
from tests.tracking.conftest import make_reader

pytestmark = pytest.mark.browser

GREETING = "Hello from the news desk"


def test_edit_preview_publish_test_send_and_roll_back(live_server, smtp, browser_page):
    app = live_server.app
    with app.extensions["db"].session() as session:
        staff = make_reader(session, STAFF)
        staff.is_staff = True
        values = session_values(staff)
    page = browser_page
    # Signed in: the session cookie the sign-in link sets (that flow is tested elsewhere).
    cookie = app.session_interface.get_signing_serializer(app).dumps(values)
    page.context.add_cookies(
        [{"name": app.config["SESSION_COOKIE_NAME"], "value": cookie, "url": live_server.url}]
    )
    page.goto(live_server.url + "/account")
    page.get_by_role("link", name="Admin").click()
    page.get_by_role("heading", name="Dashboard").wait_for()

    page.get_by_role("link", name="Templates").click()
    page.get_by_role("link", name="Daily edition").click()
    page.get_by_role("heading", name="Daily edition").wait_for()
    desktop = page.frame_locator("#preview-desktop")
    mobile = page.frame_locator("#preview-mobile")
    desktop.get_by_text("Read both sides →").first.wait_for()  # the published version
    assert desktop.get_by_text(GREETING).count() == 0

    # Edit: both previews and the text preview follow, and the check finds no problem.
    mjml = page.locator("#mjml")
    source = mjml.input_value()
    mjml.fill(
        source.replace(
            "{% for story in stories %}",
            f"<mj-text>{GREETING}</mj-text>\n{{% for story in stories %}}",
            1,
        )
    )
    desktop.get_by_text(GREETING).wait_for()
    mobile.get_by_text(GREETING).wait_for()
    page.locator("#check[data-state=ok]").wait_for()
    assert page.locator("#preview-mobile").evaluate("f => f.clientWidth") < 400
    assert page.locator("#preview-desktop").evaluate("f => f.clientWidth") >= 600

    page.get_by_label("Note (what changed)").fill("a greeting")
    page.get_by_role("button", name="Save as new version").click()
    page.get_by_text("Saved as version 2").wait_for()

    page.get_by_role("button", name="Publish v2").click()
    page.get_by_text("Published version 2").wait_for()
    assert page.locator("#published-version").inner_text() == "version 2"

    row = page.locator("tr[data-version='2']")
    row.get_by_role("button", name="Send test of v2 to me").click()
    page.get_by_text(f"Test of version 2 sent to {STAFF}").wait_for()
    [test_mail] = smtp.wait_for(STAFF)
    assert test_mail["Subject"].startswith("[Test] ")
    assert GREETING in test_mail.get_body(("html",)).get_content()

    page.get_by_role("button", name="Roll back to v1").click()
    page.get_by_text("Rolled back to version 1").wait_for()
    assert page.locator("#published-version").inner_text() == "version 1"
