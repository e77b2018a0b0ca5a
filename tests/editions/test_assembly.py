"""Choosing the day's stories: the reading budget, blindspots, no repeats, freezing."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from newsletter.billing.entitlement import Plan
from newsletter.editions.assembly import (
    HEADER_FOOTER_WORDS,
    WORDS_PER_MINUTE,
    NoStories,
    assemble,
    email_words,
)
from newsletter.editions.models import Edition, EditionStatus, EditionStory, EditionVariant
from newsletter.editions.reading import html_words, reading_seconds
from newsletter.stories.importing import import_stories

DAY = date(2026, 11, 20)
NOON = datetime(2026, 11, 20, 12, tzinfo=UTC)

OUTLETS = (
    [{"slug": f"l{i}", "name": f"Left {i}", "bias": "left"} for i in range(6)]
    + [{"slug": f"c{i}", "name": f"Center {i}", "bias": "center"} for i in range(6)]
    + [{"slug": f"r{i}", "name": f"Right {i}", "bias": "right"} for i in range(6)]
)


def make_story(
    n: int,
    *,
    words: int = 100,
    left: int = 2,
    center: int = 2,
    right: int = 2,
    hours_ago: float = 2,
    summary_words: int | None = None,
) -> dict:
    outlets = (
        [f"l{i}" for i in range(left)]
        + [f"c{i}" for i in range(center)]
        + [f"r{i}" for i in range(right)]
    )
    published = (NOON - timedelta(hours=hours_ago)).isoformat()
    title = f"Story number {n} headline"
    extra = {"summary": " ".join(["short"] * summary_words)} if summary_words else {}
    return {
        **extra,
        "external_id": f"s{n}",
        "title": title,
        "overview": " ".join(["word"] * (words - len(title.split()))),
        "published_at": published,
        "articles": [
            {
                "outlet": slug,
                "url": f"https://news.example/{n}/{slug}",
                "headline": f"H {n} {slug}",
                "published_at": published,
            }
            for slug in outlets
        ],
    }


def load(session, *stories: dict) -> None:  # type: ignore[no-untyped-def]
    report = import_stories(session, {"outlets": OUTLETS, "stories": list(stories)}, now=NOON)
    assert not report.rejected, report.rejected
    session.commit()


def picked(session, edition: Edition) -> list[str]:  # type: ignore[no-untyped-def]
    rows = session.scalars(
        select(EditionStory)
        .where(EditionStory.edition_id == edition.id)
        .order_by(EditionStory.position)
    )
    return [r.story.external_id for r in rows]


class TestSelection:
    def test_fills_the_five_minute_budget_and_stops(self, app, session):
        # 5 minutes = 1190 words; each story shows its 150-word summary, its title twice
        # (contents and heading), each side's headline and labels: not all ten fit.
        load(session, *[make_story(n, summary_words=150, hours_ago=n) for n in range(10)])
        with app.app_context():
            result = assemble(session, DAY, now=NOON)
            session.commit()
        edition = result.edition
        per_story = email_words(edition.stories[0].story)
        fit = (5 * WORDS_PER_MINUTE - HEADER_FOOTER_WORDS) // per_story
        assert 1 < fit < 10
        assert len(picked(session, edition)) == fit
        # The edition's word count is the rendered email's, not the estimate.
        assert edition.word_count == html_words(edition.variant(Plan.PAID).html)
        assert edition.reading_seconds == reading_seconds(edition.word_count)
        assert abs(edition.word_count - HEADER_FOOTER_WORDS - fit * per_story) < 0.1 * (
            edition.word_count
        )

    def test_budget_is_configurable(self, app, session):
        app.config["EDITION_READING_MINUTES"] = 2  # 476 words
        load(session, *[make_story(n, summary_words=100, hours_ago=n) for n in range(5)])
        with app.app_context():
            edition = assemble(session, DAY, now=NOON).edition
        assert len(picked(session, edition)) == 2

    def test_broad_recent_stories_come_first_and_subject_has_top_three(self, app, session):
        load(
            session,
            make_story(1, left=1, center=1, right=1, hours_ago=1),
            make_story(2, left=5, center=5, right=5, hours_ago=3),
            make_story(3, left=3, center=3, right=3, hours_ago=30),
            make_story(4, left=3, center=3, right=3, hours_ago=2),
        )
        with app.app_context():
            edition = assemble(session, DAY, now=NOON).edition
        order = picked(session, edition)
        assert order[0] == "s2"
        assert order.index("s4") < order.index("s3")  # same breadth: the fresher first
        assert edition.subject == f"Story number {order[0][1:]} headline + 3 more"

    def test_a_blindspot_is_included_even_when_it_scores_low(self, app, session):
        stories = [
            make_story(n, words=230, left=4, center=4, right=4, hours_ago=1) for n in range(6)
        ]
        blind = make_story(99, words=230, left=0, center=1, right=4, hours_ago=40)
        load(session, *stories, blind)
        with app.app_context():
            edition = assemble(session, DAY, now=NOON).edition
        ids = picked(session, edition)
        assert "s99" in ids
        assert edition.word_count <= 5 * WORDS_PER_MINUTE
        html = session.scalar(
            select(EditionVariant.html).where(EditionVariant.edition_id == edition.id)
        )
        assert "Blindspot for the left: none of the 5 rated outlets covering it leans left." in html

    def test_stories_sent_before_never_repeat(self, app, session):
        load(session, *[make_story(n, summary_words=300, hours_ago=n) for n in range(6)])
        with app.app_context():
            first = picked(session, assemble(session, DAY, now=NOON).edition)
            session.commit()
            second = picked(
                session,
                assemble(session, DAY + timedelta(days=1), now=NOON + timedelta(days=1)).edition,
            )
            session.commit()
        assert first and second
        assert not set(first) & set(second)

    def test_old_stories_are_not_candidates(self, app, session):
        load(session, make_story(1, hours_ago=24 * 5))
        with app.app_context(), pytest.raises(NoStories, match="No stories to send for 2026-11-20"):
            assemble(session, DAY, now=NOON)

    def test_no_stories_means_no_edition(self, app, session):
        with app.app_context(), pytest.raises(NoStories):
            assemble(session, DAY, now=NOON)
        session.rollback()
        assert session.scalar(select(func.count()).select_from(Edition)) == 0


class TestFreezing:
    def test_reassembly_before_sending_picks_up_new_stories(self, app, session):
        load(session, make_story(1, left=1, center=1, right=1))
        with app.app_context():
            assemble(session, DAY, now=NOON)
            session.commit()
            load(session, make_story(2, left=6, center=6, right=6))
            edition = assemble(session, DAY, now=NOON).edition
            session.commit()
        assert picked(session, edition)[0] == "s2"
        assert session.scalar(select(func.count()).select_from(Edition)) == 1
        assert session.scalar(select(func.count()).select_from(EditionVariant)) == 3

    def test_once_sending_has_started_reassembly_changes_nothing(self, app, session):
        load(session, make_story(1, left=1, center=1, right=1))
        with app.app_context():
            edition = assemble(session, DAY, now=NOON).edition
            edition.status = EditionStatus.SENDING
            session.commit()
            before = (picked(session, edition), [v.html for v in edition.variants])
            load(session, make_story(2, left=6, center=6, right=6))
            result = assemble(session, DAY, now=NOON)
            session.commit()
        assert result.created is False
        assert (
            picked(session, result.edition),
            [v.html for v in result.edition.variants],
        ) == before
