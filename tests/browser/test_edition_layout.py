"""The edition email in Chromium at a phone's width and a desktop client's: nothing
scrolls sideways, and the words a reader sees match the claimed reading time."""

from __future__ import annotations

import re

import pytest

from newsletter.billing.entitlement import Plan
from newsletter.editions.reading import WORDS_PER_MINUTE
from tests.editions.test_edition_email import claimed_minutes, demo_edition

pytestmark = pytest.mark.browser


def test_the_edition_fits_375_and_700_pixels_without_horizontal_scroll(
    app, session, browser_page, tmp_path
):
    edition = demo_edition(app, session)
    html = edition.variant(Plan.FREE).html
    page = browser_page
    for width in (375, 700):
        page.set_viewport_size({"width": width, "height": 900})
        page.set_content(html, wait_until="load")
        scroll = page.evaluate("document.documentElement.scrollWidth")
        inner = page.evaluate("window.innerWidth")
        assert scroll <= inner, f"{width}px: content is {scroll}px wide"
        shot = tmp_path / f"edition-{width}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.stat().st_size > 10_000
        # Each side's block and the contents list are there to see.
        assert page.get_by_text("In this edition").is_visible()
        assert page.locator("text=Read both sides →").count() == len(edition.stories)

    shown = len(re.findall(r"\S*\w\S*", page.evaluate("document.body.innerText")))
    claimed = claimed_minutes(html) * WORDS_PER_MINUTE
    assert abs(claimed - shown) <= 0.1 * shown, (shown, claimed)
