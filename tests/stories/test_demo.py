"""`newsletter demo`: a realistic, fictional week of news, safe to load twice."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import time_machine
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from newsletter.stories.coverage import BlindspotRule, Side, coverage
from newsletter.stories.demo import demo_document
from newsletter.stories.models import Article, Bias, Factuality, Outlet, Story

FROZEN = datetime(2025, 5, 15, 9, 41, 12, tzinfo=UTC)


def words(text: str) -> int:
    return len(text.split())


def all_stories(session) -> list[Story]:
    query = select(Story).options(selectinload(Story.articles)).order_by(Story.external_id)
    return list(session.scalars(query))


def snapshot(session) -> list[tuple]:
    session.rollback()  # ends the read snapshot: see rows committed since
    return [
        (
            s.id,
            s.slug,
            s.title,
            s.overview,
            s.published_at,
            s.updated_at,
            sorted((a.id, a.url, a.outlet_id, a.published_at) for a in s.articles),
        )
        for s in all_stories(session)
    ] + [(o.id, o.slug, o.bias, o.updated_at) for o in session.scalars(select(Outlet))]


class TestDemo:
    def test_loads_a_realistic_week_of_fictional_news(self, runner, session):
        with time_machine.travel(FROZEN, tick=False):
            result = runner.invoke(args=["demo"])
        assert result.exit_code == 0, result.output
        assert "stories: 44 created, 0 updated, 0 unchanged" in result.output

        outlets = list(session.scalars(select(Outlet)))
        assert len(outlets) >= 14
        assert {o.bias for o in outlets} == set(Bias)  # the whole scale, and unrated
        assert sum(o.bias == Bias.UNRATED for o in outlets) >= 2
        assert len({o.factuality for o in outlets} - {Factuality.UNRATED}) >= 4
        assert all(o.url and o.url.startswith("https://") for o in outlets)

        stories = all_stories(session)
        assert len(stories) >= 40
        assert len({s.title for s in stories}) == len(stories)
        for s in stories:
            assert 60 <= words(s.overview) <= 120, s.title
            for analysis in (s.analysis_left, s.analysis_center, s.analysis_right):
                assert analysis is None or 40 <= words(analysis) <= 90, s.title
            assert 3 <= len(s.articles) <= 12, s.title
            assert 2 <= len(s.faq) <= 5, s.title
            assert all(item["question"].endswith("?") and item["answer"] for item in s.faq)
            assert s.topics
            # Spread over the last five days before now, each at its newest article.
            assert FROZEN - timedelta(days=5) <= s.published_at <= FROZEN, s.title
            assert s.published_at == max(a.published_at for a in s.articles)
        days = {(FROZEN - s.published_at).days for s in stories}
        assert days == {0, 1, 2, 3, 4}

        rule = BlindspotRule()
        covs = {s.external_id: coverage(s, rule) for s in stories}
        blindspots = Counter(c.blindspot for c in covs.values())
        assert blindspots[Side.LEFT] >= 3
        assert blindspots[Side.RIGHT] >= 3
        assert blindspots[None] >= 20  # most stories are covered by both sides

        no_center = [s for s in stories if covs[s.external_id].center == 0]
        assert no_center, "a story with no Center coverage, like the seed page"
        assert any(s.analysis_center is None for s in no_center)
        assert any(covs[s.external_id].left and covs[s.external_id].right for s in no_center)

        missing = [
            s for s in stories if None in (s.analysis_left, s.analysis_center, s.analysis_right)
        ]
        assert len(missing) >= 3
        assert any(c.source_count > c.rated_count for c in covs.values())  # unrated outlets
        assert any(
            len(s.articles) > covs[s.external_id].source_count for s in stories
        )  # an outlet with two articles in one story

    def test_running_it_twice_changes_nothing(self, runner, session):
        with time_machine.travel(FROZEN, tick=False):
            first = runner.invoke(args=["demo"])
            before = snapshot(session)
            second = runner.invoke(args=["demo"])
        assert first.exit_code == 0 and second.exit_code == 0, second.output
        assert "stories: 0 created, 0 updated, 44 unchanged" in second.output
        assert "outlets: 0 created, 0 updated, 19 unchanged" in second.output
        assert snapshot(session) == before

    def test_a_later_run_moves_the_times_but_creates_nothing(self, runner, session):
        with time_machine.travel(FROZEN, tick=False):
            runner.invoke(args=["demo"])
        ids = {s.external_id: (s.id, s.slug) for s in all_stories(session)}
        article_ids = set(session.scalars(select(Article.id)))
        with time_machine.travel(FROZEN + timedelta(days=1), tick=False):
            result = runner.invoke(args=["demo"])
        assert result.exit_code == 0, result.output
        assert "stories: 0 created, 44 updated, 0 unchanged" in result.output
        session.rollback()  # ends the read snapshot: see rows committed since
        assert {s.external_id: (s.id, s.slug) for s in all_stories(session)} == ids
        assert set(session.scalars(select(Article.id))) == article_ids  # updated in place
        newest = max(s.published_at for s in all_stories(session))
        assert FROZEN < newest <= FROZEN + timedelta(days=1)


def test_the_demo_text_is_the_same_every_time_only_the_times_move():
    first = demo_document(FROZEN)
    assert demo_document(FROZEN) == first
    later = demo_document(FROZEN + timedelta(days=3))

    def text(doc):
        return [
            (s["external_id"], s["title"], s["analysis_left"], [a["url"] for a in s["articles"]])
            for s in doc["stories"]
        ]

    assert text(later) == text(first)
    moved = [
        datetime.fromisoformat(a["published_at"]) for s in later["stories"] for a in s["articles"]
    ]
    assert max(moved) <= FROZEN + timedelta(days=3)
    assert min(moved) > FROZEN + timedelta(days=3) - timedelta(days=6)
