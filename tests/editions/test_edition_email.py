"""The demo edition as a reader gets it: each side's headline, a short subject, a
reading time that matches the words shown, under Gmail's clip; and the rules behind it."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser

from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from newsletter.billing.entitlement import Plan
from newsletter.editions.assembly import assemble, subject_for
from newsletter.editions.models import Edition, EditionStory
from newsletter.editions.reading import WORDS_PER_MINUTE, count_words, html_words
from newsletter.stories.coverage import Side, side_of
from newsletter.stories.demo import load_demo
from newsletter.stories.framing import cut_at_sentence, representatives
from newsletter.stories.models import Article, Bias, Factuality, Outlet, Story

NOW = datetime(2026, 11, 20, 12, tzinfo=UTC)
GMAIL_CLIP = 102 * 1024


def demo_edition(app, session) -> Edition:  # type: ignore[no-untyped-def]
    with app.app_context():
        load_demo(session, now=NOW)
        edition = assemble(session, NOW.date(), now=NOW).edition
        session.commit()
        return session.scalar(
            select(Edition)
            .where(Edition.id == edition.id)
            .options(
                selectinload(Edition.stories)
                .joinedload(EditionStory.story)
                .selectinload(Story.articles)
                .joinedload(Article.outlet)
            )
        )


class _Text(HTMLParser):
    """An independent reading of the HTML: the text of <body>, without the elements a
    client hides (display:none, such as the preheader) and their content."""

    def __init__(self) -> None:
        super().__init__()
        self.depth_hidden = 0
        self.stack: list[bool] = []
        self.body = False
        self.out: list[str] = []

    def handle_starttag(self, tag, attrs):  # type: ignore[no-untyped-def]
        if tag == "body":
            self.body = True
        if tag in {"br", "img", "meta", "hr", "link", "input"}:
            return
        hidden = "display:none" in (dict(attrs).get("style") or "").replace(" ", "")
        self.stack.append(hidden)
        self.out.append(" ")

    def handle_endtag(self, tag):  # type: ignore[no-untyped-def]
        if self.stack and tag not in {"br", "img", "meta", "hr", "link", "input"}:
            self.stack.pop()
        self.out.append(" ")

    def handle_data(self, data):  # type: ignore[no-untyped-def]
        if self.body and not any(self.stack):
            self.out.append(data)


def words_seen(html: str) -> int:
    parser = _Text()
    parser.feed(html)
    return len(re.findall(r"[^\s]*\w[^\s]*", "".join(parser.out)))


def claimed_minutes(part: str) -> int:
    return int(re.search(r"(\d+)-minute read", part).group(1))  # type: ignore[union-attr]


class TestDemoEdition:
    def test_each_story_shows_each_sides_headline_as_available(self, app, session):
        edition = demo_edition(app, session)
        variant = edition.variant(Plan.FREE)
        # The text part's story sections, in order, with the line wrapping undone.
        sections = [" ".join(p.split()) for p in variant.text.split("-" * 70)[1:]]
        html = " ".join(variant.html.replace("&amp;", "&").replace("&#39;", "'").split())
        missing_sides = 0
        for entry, section in zip(edition.stories, sections, strict=False):
            story = entry.story
            assert story.title in section and story.title in html
            for side in Side:
                on_side = [a for a in story.articles if side_of(a.outlet.bias) == side]
                if on_side:
                    shown = [a for a in on_side if f"{a.outlet.name}: “{a.headline}”" in section]
                    assert len(shown) == 1, (story.title, side)  # one representative a side
                    assert f"{shown[0].outlet.name}: “{shown[0].headline}”" in html
                else:
                    missing_sides += 1
                    assert f"No {side.value.capitalize()} coverage" in section
        # Sides with no coverage say so, once per missing side, in both parts.
        for part in (variant.text, variant.html):
            said = len(re.findall(r"No (?:Left|Center|Right) coverage", part))
            assert said == missing_sides

    def test_subject_is_the_top_story_and_how_many_more_within_70(self, app, session):
        edition = demo_edition(app, session)
        top = edition.stories[0].story.title
        assert len(edition.subject) <= 70
        assert edition.subject.endswith(f" + {len(edition.stories) - 1} more")
        assert edition.subject.startswith(top[:20])
        assert edition.preheader and edition.preheader in edition.variant(Plan.PAID).html

    def test_claimed_reading_time_is_within_10_percent_of_the_words_shown(self, app, session):
        edition = demo_edition(app, session)
        for variant in edition.variants:
            html_seen = words_seen(variant.html)
            text_seen = len(
                re.findall(r"[^\s]*\w[^\s]*", re.sub(r"https?://\S+", "", variant.text))
            )
            for shown, part in ((html_seen, variant.html), (text_seen, variant.text)):
                claimed = claimed_minutes(part) * WORDS_PER_MINUTE
                assert abs(claimed - shown) <= 0.1 * shown, (variant.plan, shown, claimed)
        # The one counting function agrees with the independent counts above.
        paid = edition.variant(Plan.PAID)
        assert abs(html_words(paid.html) - words_seen(paid.html)) <= 0.02 * words_seen(paid.html)
        assert edition.word_count == html_words(paid.html)

    def test_html_is_under_the_gmail_clip_and_the_text_part_has_the_same_stories(
        self, app, session
    ):
        edition = demo_edition(app, session)
        for variant in edition.variants:
            assert len(variant.html.encode()) < GMAIL_CLIP
            assert "In this edition" in variant.html and "IN THIS EDITION" in variant.text
            for entry in edition.stories:
                assert entry.story.title in variant.text
                assert entry.story.title in variant.html
            html_n, text_n = html_words(variant.html), count_words(variant.text)
            assert abs(html_n - text_n) <= 0.1 * html_n

    def test_web_link_and_forwarding_line_in_the_email(self, app, session):
        edition = demo_edition(app, session)
        base = app.config["BASE_URL"]
        for variant in edition.variants:
            assert f'href="{base}/editions/{edition.date.isoformat()}"' in variant.html
            assert "View in browser" in variant.html
            assert "Forward this to a friend" in variant.text
            assert f'href="{base}/"' in variant.html

    def test_blindspots_get_a_section_and_a_one_line_explanation(self, app, session):
        edition = demo_edition(app, session)
        html = edition.variant(Plan.PAID).html
        from newsletter.stories.coverage import coverage

        blind = [e.story for e in edition.stories if coverage(e.story).blindspot]
        assert blind, "the demo edition surfaces a blindspot"
        assert "Blindspots" in html
        for story in blind:
            side = coverage(story).blindspot
            assert re.search(rf"Blindspot for the {side}: (only \d+|none) of the \d+ rated", html)

    def test_with_billing_off_the_free_line_promises_nothing(self, app, session):
        app.config.update(STRIPE_SECRET_KEY=None, STRIPE_PRICE_ID=None)
        edition = demo_edition(app, session)
        free = edition.variant(Plan.FREE)
        for part in (free.html, free.text):
            assert "Go unlimited" not in part and "trial" not in part.lower()
            assert "free stories left this month; they reset on December 1" in part

    def test_with_billing_on_the_free_line_offers_the_plan(self, app, session):
        app.config.update(STRIPE_SECRET_KEY="sk_test_x", STRIPE_PRICE_ID="price_x")
        edition = demo_edition(app, session)
        assert "Go unlimited" in edition.variant(Plan.FREE).html


def _story(*articles: tuple[str, Bias, Factuality, datetime | None]) -> Story:
    story = Story(title="t", overview="o", summary=None)
    story.articles = [
        Article(
            id=i,
            headline=f"headline {i}",
            published_at=when,
            outlet=Outlet(name=name, slug=name, bias=bias, factuality=fact),
        )
        for i, (name, bias, fact, when) in enumerate(articles, start=1)
    ]
    return story


class TestRepresentativeArticle:
    def test_highest_factuality_of_each_side_then_earliest(self):
        early = datetime(2026, 11, 1, tzinfo=UTC)
        late = datetime(2026, 11, 2, tzinfo=UTC)
        story = _story(
            ("mixed-left", Bias.LEFT, Factuality.MIXED, early),
            ("high-left-late", Bias.LEAN_LEFT, Factuality.HIGH, late),
            ("high-left-early", Bias.FAR_LEFT, Factuality.HIGH, early),
            ("right-undated", Bias.RIGHT, Factuality.VERY_HIGH, None),
            ("right-dated", Bias.RIGHT, Factuality.VERY_HIGH, late),
            ("unrated", Bias.UNRATED, Factuality.VERY_HIGH, early),
        )
        left, center, right = representatives(story)
        assert (left.outlet, left.headline) == ("high-left-early", "headline 3")
        assert center.headline is None and center.outlet is None
        assert right.outlet == "right-dated"


class TestShortOverview:
    def test_cuts_after_the_last_whole_sentence_within_about_50_words(self):
        first = "One two three four five six seven eight nine ten. " * 5
        text = first + "Eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen."
        assert cut_at_sentence(text) == first.strip()

    def test_one_long_sentence_is_cut_at_a_word_with_an_ellipsis(self):
        text = " ".join(f"w{i}" for i in range(80))
        assert cut_at_sentence(text) == " ".join(f"w{i}" for i in range(50)) + "…"

    @given(st.text(alphabet=st.sampled_from("ab .!?\n\"'”"), max_size=600))
    def test_any_overview_gives_a_prefix_of_at_most_about_50_words(self, text):
        cut = cut_at_sentence(text)
        words = text.split()
        assert len(cut.split()) <= 55
        assert " ".join(words).startswith(cut.removesuffix("…").rstrip(",;:"))


def test_subject_never_exceeds_70_characters():
    @given(st.lists(st.text(min_size=1, max_size=300).filter(str.strip), min_size=1, max_size=10))
    def check(titles):  # type: ignore[no-untyped-def]
        assert len(subject_for(titles)) <= 70

    check()
