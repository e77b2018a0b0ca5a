"""A staff member in Chromium works the stories queue: opens a candidate, splits an
article off, merges it back, edits the title and publishes."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from newsletter.auth.session import session_values
from newsletter.stories.ingest import ingest_articles
from newsletter.stories.models import Story, StoryStatus
from tests.admin.conftest import STAFF
from tests.stories.test_ingest import BRIDGE, ELECTION, NOW, items, outlets
from tests.tracking.conftest import make_reader

pytestmark = pytest.mark.browser


def test_review_queue_split_merge_edit_publish(live_server, browser_page):
    app = live_server.app
    with app.extensions["db"].session() as session:
        ids = outlets(session)
        with app.app_context():
            ingest_articles(
                session, items(ids, BRIDGE, "bridge") + items(ids, ELECTION, "farm"), now=NOW
            )
        session.commit()
        staff = make_reader(session, STAFF)
        staff.is_staff = True
        values = session_values(staff)
    page = browser_page
    cookie = app.session_interface.get_signing_serializer(app).dumps(values)
    page.context.add_cookies(
        [{"name": app.config["SESSION_COOKIE_NAME"], "value": cookie, "url": live_server.url}]
    )
    page.goto(live_server.url + "/admin/")
    page.get_by_role("link", name="Stories").click()
    page.get_by_role("heading", name="Stories").wait_for()
    page.get_by_role("link", name="Candidate (2)").wait_for()
    page.get_by_role("link", name=BRIDGE[1][1]).click()
    page.locator("#story-coverage").get_by_text("5 outlets").wait_for()

    # Split the right-leaning article off into a new story.
    page.get_by_label("Move: " + BRIDGE[2][1]).check()
    page.get_by_role("button", name="Split").click()
    page.get_by_text("Moved 1 articles to story").wait_for()
    assert page.locator("#articles tbody tr").count() == 4
    with app.extensions["db"].session() as session:
        split_off = session.scalars(select(Story).order_by(Story.id.desc())).first()
        assert split_off is not None and split_off.title == BRIDGE[2][1]
        split_id = split_off.id

    # Merge it back.
    page.get_by_label("Merge these stories into this one (ids)").fill(str(split_id))
    page.get_by_role("button", name="Merge").click()
    page.get_by_text("Merged: 1 articles moved into this story.").wait_for()
    assert page.locator("#articles tbody tr").count() == 5

    page.get_by_label("Title").fill("Harbor bridge collapses in Port Ellis")
    page.get_by_role("button", name="Save").click()
    page.get_by_text("Saved.").wait_for()
    page.get_by_role("heading", name="Harbor bridge collapses in Port Ellis").wait_for()

    page.get_by_role("button", name="Publish").click()
    page.locator("#story-status").get_by_text("published").wait_for()
    page.get_by_role("link", name="← Stories").click()
    page.get_by_role("link", name="Published (1)").wait_for()
    with app.extensions["db"].session() as session:
        statuses = sorted(s.status for s in session.scalars(select(Story)))
    assert statuses == [StoryStatus.CANDIDATE, StoryStatus.PUBLISHED]
