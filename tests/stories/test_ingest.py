"""Feed articles into stories: dedupe by URL, GUID and wire copy; clustering into stories."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from flask import Flask
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.editions.models import Edition, EditionStatus, EditionStory
from newsletter.stories.ingest import IncomingArticle, IngestReport, ingest_articles
from newsletter.stories.models import Article, Bias, Factuality, Outlet, Story, StoryStatus

T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)
NOW = T0 + timedelta(hours=6)

OUTLETS = [
    ("left-times", Bias.LEFT, Factuality.HIGH),
    ("lean-left-daily", Bias.LEAN_LEFT, Factuality.MOSTLY_FACTUAL),
    ("center-wire", Bias.CENTER, Factuality.HIGH),
    ("center-courier", Bias.CENTER, Factuality.VERY_HIGH),
    ("lean-right-post", Bias.LEAN_RIGHT, Factuality.MIXED),
    ("right-herald", Bias.RIGHT, Factuality.MIXED),
]

# One event (a bridge collapse), five outlets, five different headlines and ledes.
BRIDGE = [
    (
        "left-times",
        "Harbor bridge collapses during morning rush, dozens of commuters injured",
        "The Harbor bridge in Port Ellis collapsed on Tuesday morning, injuring dozens of "
        "commuters; inspectors had flagged corrosion on the bridge two years ago.",
    ),
    (
        "center-wire",
        "Port Ellis Harbor bridge collapse injures commuters; cause under investigation",
        "Part of the Harbor bridge in Port Ellis collapsed on Tuesday during the morning "
        "rush. Officials said dozens of commuters were injured and divers were searching.",
    ),
    (
        "right-herald",
        "Officials ignored warnings before Port Ellis bridge collapse",
        "Warnings about corrosion went unheeded for years before the Harbor bridge in "
        "Port Ellis collapsed Tuesday, injuring commuters, records show.",
    ),
    (
        "lean-left-daily",
        "Divers search river after Harbor bridge collapse in Port Ellis",
        "Rescue divers searched the river on Tuesday after the Harbor bridge collapsed, "
        "as Port Ellis hospitals treated dozens of injured commuters.",
    ),
    (
        "lean-right-post",
        "Harbor bridge collapse: what we know about the Port Ellis disaster",
        "The Harbor bridge collapse in Port Ellis on Tuesday morning injured commuters "
        "and shut the port; here is what we know about the corrosion warnings.",
    ),
]

# A different event on the same day.
ELECTION = [
    (
        "left-times",
        "Senate passes farm subsidy bill after late-night vote",
        "The Senate approved the farm subsidy bill 52-48 after a late-night session, "
        "sending the measure on grain prices and crop insurance to the House.",
    ),
    (
        "center-courier",
        "Farm subsidy bill clears Senate 52-48, heads to House",
        "The Senate passed the farm subsidy bill in a 52-48 vote, with crop insurance "
        "and grain price supports now going to the House.",
    ),
    (
        "right-herald",
        "Senate farm bill vote: subsidies win 52-48 as critics decry cost",
        "Critics of the farm subsidy bill decried its cost after the Senate passed it "
        "52-48; the House takes up the crop insurance measure next.",
    ),
]


def outlets(session: Session) -> dict[str, int]:
    ids = {}
    for slug, bias, factuality in OUTLETS:
        outlet = Outlet(slug=slug, name=slug.replace("-", " ").title(), bias=bias)
        outlet.factuality = factuality
        session.add(outlet)
        session.flush()
        ids[slug] = outlet.id
    session.commit()
    return ids


def items(
    ids: dict[str, int], event: list[tuple[str, str, str]], name: str, start: datetime = T0
) -> list[IncomingArticle]:
    return [
        IncomingArticle(
            outlet_id=ids[slug],
            url=f"https://{slug}.example/{name}/{n}",
            headline=headline,
            lede=lede,
            published_at=start + timedelta(minutes=37 * n),
            guid=f"{name}-{n}",
        )
        for n, (slug, headline, lede) in enumerate(event)
    ]


def ingest(
    app: Flask, session: Session, batch: list[IncomingArticle], now: datetime = NOW
) -> IngestReport:
    with app.app_context():
        report = ingest_articles(session, batch, now=now)
        session.commit()
    return report


def story_of(session: Session) -> dict[str, int]:
    return {a.url: a.story_id for a in session.scalars(select(Article))}


def snapshot(session: Session) -> list[tuple[object, ...]]:
    session.expire_all()
    arts = session.execute(
        select(Article.id, Article.story_id, Article.canonical_url).order_by(Article.id)
    ).all()
    stories = session.execute(
        select(Story.id, Story.title, Story.overview, Story.status, Story.published_at).order_by(
            Story.id
        )
    ).all()
    return [*map(tuple, arts), *map(tuple, stories)]


class TestClustering:
    def test_one_event_by_five_outlets_becomes_one_story(self, app, session):
        ids = outlets(session)
        report = ingest(app, session, items(ids, BRIDGE, "bridge"))
        assert (report.fetched, report.new, report.duplicate) == (5, 5, 0)
        assert (report.new_stories, report.clustered) == (1, 4)
        (story,) = session.scalars(select(Story)).all()
        assert story.status == StoryStatus.CANDIDATE
        assert len({a.outlet_id for a in story.articles}) == 5
        # Titled after the center outlet's article.
        assert story.title == BRIDGE[1][1]
        assert story.overview == BRIDGE[1][2]

    def test_two_events_on_the_same_day_stay_apart(self, app, session):
        ids = outlets(session)
        batch = items(ids, BRIDGE, "bridge") + items(
            ids, ELECTION, "farm", T0 + timedelta(minutes=5)
        )
        report = ingest(app, session, batch)
        assert report.new_stories == 2
        stories = story_of(session)
        bridge = {stories[f"https://{s}.example/bridge/{n}"] for n, (s, _, _) in enumerate(BRIDGE)}
        farm = {stories[f"https://{s}.example/farm/{n}"] for n, (s, _, _) in enumerate(ELECTION)}
        assert len(bridge) == 1 and len(farm) == 1 and bridge != farm

    def test_articles_arriving_in_later_batches_join_the_story(self, app, session):
        ids = outlets(session)
        batch = items(ids, BRIDGE, "bridge")
        ingest(app, session, batch[:2])
        report = ingest(app, session, batch[2:])
        assert (report.new, report.clustered, report.new_stories) == (3, 3, 0)
        assert session.scalar(select(func.count()).select_from(Story)) == 1

    def test_an_event_outside_the_window_opens_its_own_story(self, app, session):
        ids = outlets(session)
        ingest(app, session, items(ids, BRIDGE, "bridge")[:2])
        later = items(ids, BRIDGE, "bridge-again", T0 + timedelta(days=5))[2:]
        report = ingest(app, session, later, now=T0 + timedelta(days=6))
        assert report.new_stories == 1
        assert session.scalar(select(func.count()).select_from(Story)) == 2

    def test_rerunning_changes_nothing(self, app, session):
        ids = outlets(session)
        batch = items(ids, BRIDGE, "bridge") + items(ids, ELECTION, "farm")
        ingest(app, session, batch)
        before = snapshot(session)
        report = ingest(app, session, batch)
        assert (report.new, report.duplicate, report.new_stories) == (0, 8, 0)
        assert snapshot(session) == before

    def test_the_same_input_files_the_same_way(self, app, session):
        ids = outlets(session)
        batch = items(ids, BRIDGE, "bridge") + items(ids, ELECTION, "farm")
        ingest(app, session, list(reversed(batch)))
        first = sorted((a.canonical_url, a.story.title) for a in session.scalars(select(Article)))
        session.query(Article).delete()
        session.query(Story).delete()
        session.commit()
        ingest(app, session, batch)
        second = sorted((a.canonical_url, a.story.title) for a in session.scalars(select(Article)))
        assert first == second

    def test_a_story_in_a_sent_edition_keeps_its_articles(self, app, session):
        ids = outlets(session)
        bridge = items(ids, BRIDGE, "bridge")
        # Two halves of one event that became two stories (the second half first in a
        # story of its own, then the first half in another).
        ingest(app, session, bridge[2:3])
        sent_story = session.scalar(select(Story))
        assert sent_story is not None
        edition = Edition(
            date=date(2026, 3, 10),
            status=EditionStatus.SENT,
            subject="s",
            preheader="p",
            word_count=1,
            reading_seconds=1,
        )
        session.add(edition)
        session.flush()
        session.add(EditionStory(edition_id=edition.id, story_id=sent_story.id, position=0))
        session.commit()
        ingest(app, session, bridge[:2] + bridge[3:])
        session.expire_all()
        kept = session.get(Story, sent_story.id)
        assert kept is not None
        assert [a.url for a in kept.articles][0] == "https://right-herald.example/bridge/2"
        # Its title is not rewritten under the readers who got it either.
        assert kept.title == BRIDGE[2][1]

    def test_auto_publish_with_enough_outlets(self, app, session):
        app.config["STORIES_AUTO_PUBLISH_OUTLETS"] = 4
        ids = outlets(session)
        ingest(app, session, items(ids, BRIDGE, "bridge") + items(ids, ELECTION, "farm"))
        statuses = {
            len({a.outlet_id for a in s.articles}): s.status for s in session.scalars(select(Story))
        }
        assert statuses == {5: StoryStatus.PUBLISHED, 3: StoryStatus.CANDIDATE}


class TestDedupe:
    def test_the_same_article_under_tracking_urls_is_stored_once(self, app, session):
        ids = outlets(session)
        (one,) = items(ids, BRIDGE[:1], "bridge")
        variants = [
            one,
            IncomingArticle(
                **{
                    **one.__dict__,
                    "url": "HTTPS://Left-Times.example:443/bridge/0?utm_source=rss#top",
                }
            ),
            IncomingArticle(**{**one.__dict__, "url": one.url + "?fbclid=abc&gclid=x"}),
        ]
        report = ingest(app, session, variants)
        assert (report.new, report.duplicate) == (1, 2)
        (article,) = session.scalars(select(Article)).all()
        assert article.canonical_url == "https://left-times.example/bridge/0"

    def test_the_same_guid_in_one_feed_is_stored_once(self, app, session):
        ids = outlets(session)
        (one,) = items(ids, BRIDGE[:1], "bridge")
        first = IncomingArticle(**{**one.__dict__, "feed_id": 7})
        moved = IncomingArticle(**{**one.__dict__, "feed_id": 7, "url": one.url + "-updated"})
        other_feed = IncomingArticle(
            **{**one.__dict__, "feed_id": 8, "url": one.url + "-elsewhere", "headline": "x y"}
        )
        assert ingest(app, session, [first]).new == 1
        report = ingest(app, session, [moved, other_feed])
        assert (report.new, report.duplicate) == (1, 1)
        urls = sorted(a.url for a in session.scalars(select(Article)))
        assert urls == [one.url, one.url + "-elsewhere"]

    def test_a_wire_copy_counts_as_coverage_by_each_outlet(self, app, session):
        ids = outlets(session)
        wire = (
            "Port Ellis council approves new harbor ferry schedule",
            "The Port Ellis council on Tuesday approved a new ferry schedule for the harbor, "
            "adding late-night crossings from next month, the mayor said in a statement.",
        )
        batch = [
            IncomingArticle(
                ids[slug], f"https://{slug}.example/ap/{n}", *wire, T0 + timedelta(minutes=n)
            )
            for n, slug in enumerate(["center-wire", "left-times", "right-herald"])
        ]
        report = ingest(app, session, batch)
        assert (report.new, report.new_stories) == (3, 1)
        (story,) = session.scalars(select(Story)).all()
        assert {a.outlet.slug for a in story.articles} == {
            "center-wire",
            "left-times",
            "right-herald",
        }

    def test_the_same_outlets_copy_under_a_new_url_is_a_duplicate(self, app, session):
        ids = outlets(session)
        (one,) = items(ids, BRIDGE[:1], "bridge")
        again = IncomingArticle(
            **{**one.__dict__, "url": "https://left-times.example/2026/03/10/bridge-collapse"}
        )
        ingest(app, session, [one])
        report = ingest(app, session, [again])
        assert (report.new, report.duplicate) == (0, 1)

    def test_bad_urls_and_empty_headlines_are_skipped(self, app, session):
        ids = outlets(session)
        (one,) = items(ids, BRIDGE[:1], "bridge")
        bad = [
            IncomingArticle(**{**one.__dict__, "url": "javascript:alert(1)"}),
            IncomingArticle(**{**one.__dict__, "url": "ftp://left-times.example/x"}),
            IncomingArticle(**{**one.__dict__, "headline": "  \n "}),
            IncomingArticle(**{**one.__dict__, "headline": "nul \x00 byte"}),
        ]
        report = ingest(app, session, bad)
        assert (report.fetched, report.new, report.duplicate) == (4, 0, 0)
        assert session.scalar(select(func.count()).select_from(Article)) == 0

    def test_naive_times_are_utc_and_missing_ones_are_first_seen(self, app, session):
        ids = outlets(session)
        (one,) = items(ids, BRIDGE[:1], "bridge")
        naive = IncomingArticle(**{**one.__dict__, "published_at": datetime(2026, 3, 10, 7, 0)})
        undated = IncomingArticle(
            **{**items(ids, BRIDGE[1:2], "b")[0].__dict__, "published_at": None}
        )
        ingest(app, session, [naive, undated])
        times = {a.url: a.published_at for a in session.scalars(select(Article))}
        assert times[one.url] == datetime(2026, 3, 10, 7, 0, tzinfo=UTC)
        assert times[undated.url] == NOW


class TestSettings:
    def test_window_and_auto_publish_come_from_the_environment(self, tmp_path, monkeypatch):
        from newsletter.config import Config
        from newsletter.errors import ConfigError
        from newsletter.stories.clustering import ClusterSettings

        monkeypatch.setenv("NEWSLETTER_INSTANCE", str(tmp_path))
        default = Config.from_env({})
        assert default.STORIES_CLUSTER_WINDOW_HOURS == 48
        assert default.STORIES_AUTO_PUBLISH_OUTLETS is None
        cfg = Config.from_env(
            {"STORIES_CLUSTER_WINDOW_HOURS": "24", "STORIES_AUTO_PUBLISH_OUTLETS": "3"}
        )
        settings = ClusterSettings.from_config(
            {
                "STORIES_CLUSTER_WINDOW_HOURS": cfg.STORIES_CLUSTER_WINDOW_HOURS,
                "STORIES_AUTO_PUBLISH_OUTLETS": cfg.STORIES_AUTO_PUBLISH_OUTLETS,
            }
        )
        assert settings.window == timedelta(hours=24) and settings.auto_publish_outlets == 3
        with pytest.raises(ConfigError, match="STORIES_AUTO_PUBLISH_OUTLETS"):
            Config.from_env({"STORIES_AUTO_PUBLISH_OUTLETS": "0"})


class TestAnyFeedText:
    @settings(
        max_examples=12,
        deadline=None,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    )
    @given(
        batch=st.lists(
            st.tuples(
                st.text(max_size=80),  # headline
                st.one_of(st.none(), st.text(max_size=300)),  # lede
                st.text(max_size=60),  # URL path and query, any characters
                st.one_of(st.none(), st.text(max_size=40)),  # GUID
                st.one_of(st.none(), st.datetimes(timezones=st.just(UTC))),
            ),
            max_size=6,
        )
    )
    def test_whatever_a_feed_says_each_item_is_stored_once_or_skipped(self, app, session, batch):
        outlet = session.scalar(select(Outlet).where(Outlet.slug == "any-text"))
        if outlet is None:
            outlet = Outlet(slug="any-text", name="Any Text")
            session.add(outlet)
            session.commit()
        given_items = [
            IncomingArticle(outlet.id, f"https://any.example/{path}", headline, lede, at, guid, 1)
            for headline, lede, path, guid, at in batch
        ]
        before = session.scalar(select(func.count()).select_from(Article))
        report = ingest(app, session, given_items)
        stored = session.scalar(select(func.count()).select_from(Article)) - before
        assert report.fetched == len(batch)
        assert report.new == stored and report.new + report.duplicate <= len(batch)
        assert report.new == report.clustered + report.new_stories
        again = ingest(app, session, given_items)
        assert again.new == 0
        assert session.scalar(select(func.count()).select_from(Article)) - before == stored
