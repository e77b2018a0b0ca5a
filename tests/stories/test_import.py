"""Importing stories: create or update by external id, per-record errors, and the CLI."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime

import pytest
from sqlalchemy import func, select

from newsletter.stories.coverage import Side, coverage
from newsletter.stories.importing import import_stories, schema, slugify
from newsletter.stories.models import Article, Bias, Outlet, Story
from tests.stories.builders import OUTLETS, article, document, story

NOW = datetime(2025, 5, 15, 12, 0, tzinfo=UTC)
LATER = datetime(2025, 5, 16, 12, 0, tzinfo=UTC)


def count(session, model) -> int:
    return session.scalar(select(func.count()).select_from(model))


def get_story(session, external_id: str) -> Story | None:
    return session.scalar(select(Story).where(Story.external_id == external_id))


def errors_of(report) -> list[tuple[str | None, int | None, str]]:
    return [(e.record, e.index, e.path) for e in report.errors]


class TestCreateAndUpdate:
    def test_creates_outlets_and_stories(self, session):
        report = import_stories(session, document(story("s-1"), story("s-2")), now=NOW)
        session.commit()

        assert report.created == ["s-1", "s-2"]
        assert report.errors == []
        assert sorted(report.outlets) == ["lefty", "middle", "righty"]
        saved = get_story(session, "s-1")
        assert saved.title == "Council votes on the budget (s-1)"
        assert saved.slug == "council-votes-on-the-budget-s-1"
        assert saved.faq == [{"question": "What happened?", "answer": "A vote."}]
        assert saved.topics == ["Budget", "Education"]
        assert saved.created_at == saved.updated_at == NOW
        # No published_at given: the newest article's time.
        assert saved.published_at == datetime(2025, 5, 14, 3, 0, tzinfo=UTC)
        assert {(a.url, a.outlet.slug) for a in saved.articles} == {
            ("https://news.example/articles/1", "lefty"),
            ("https://news.example/articles/2", "middle"),
            ("https://news.example/articles/3", "righty"),
        }
        cov = coverage(saved)
        assert (cov.left, cov.center, cov.right) == (1, 1, 1)
        assert count(session, Article) == 6

    def test_the_optional_summary_is_stored_updated_and_cleared(self, session):
        with_summary = {**story("s-1"), "summary": "  The council  passed the budget. "}
        import_stories(session, document(with_summary, story("s-2")), now=NOW)
        session.commit()
        assert get_story(session, "s-1").summary == "The council  passed the budget."
        assert get_story(session, "s-2").summary is None

        report = import_stories(session, document(story("s-1")), now=LATER)
        session.commit()
        assert report.updated == ["s-1"]  # a summary taken away is a change
        assert get_story(session, "s-1").summary is None

    def test_a_summary_too_long_or_blank_is_rejected_with_a_reason(self, session):
        long = {**story("s-1"), "summary": "word " * 500}
        blank = {**story("s-2"), "summary": "   "}
        report = import_stories(session, document(long, blank), now=NOW)
        session.rollback()
        assert errors_of(report) == [
            ("stories[0]", 0, "stories[0].summary"),
            ("stories[1]", 1, "stories[1].summary"),
        ]
        assert count(session, Story) == 0

    def test_the_same_document_again_changes_nothing(self, session):
        import_stories(session, document(story("s-1")), now=NOW)
        session.commit()
        first_ids = sorted(session.scalars(select(Article.id)))

        report = import_stories(session, document(story("s-1")), now=LATER)
        session.commit()

        assert (report.created, report.updated, report.unchanged) == ([], [], ["s-1"])
        assert report.outlets == {
            "lefty": "unchanged",
            "middle": "unchanged",
            "righty": "unchanged",
        }
        assert sorted(session.scalars(select(Article.id))) == first_ids
        assert get_story(session, "s-1").updated_at == NOW

    def test_updating_by_external_id_replaces_fields_and_articles(self, session):
        import_stories(session, document(story("s-1")), now=NOW)
        session.commit()
        kept_id = session.scalar(select(Article.id).where(Article.url.endswith("/2")))

        changed = story(
            "s-1",
            title="A brand new title",
            analysis_center=None,
            topics=["Schools"],
            articles=[
                article(2, "middle", headline="A corrected headline"),
                article(4, "righty"),
                article(5, {"slug": "fresh", "name": "Fresh Voice", "bias": "far_right"}),
            ],
        )
        report = import_stories(session, document(changed), now=LATER)
        session.commit()
        session.expire_all()

        assert report.updated == ["s-1"]
        assert report.outlets["fresh"] == "created"
        saved = get_story(session, "s-1")
        assert saved.title == "A brand new title"
        # The slug is in links already emailed to readers: it stays.
        assert saved.slug == "council-votes-on-the-budget-s-1"
        assert saved.analysis_center is None
        assert saved.topics == ["Schools"]
        assert (saved.created_at, saved.updated_at) == (NOW, LATER)
        urls = {a.url.rsplit("/", 1)[1]: a for a in saved.articles}
        assert sorted(urls) == ["2", "4", "5"]
        assert urls["2"].id == kept_id and urls["2"].headline == "A corrected headline"
        assert count(session, Article) == 3
        cov = coverage(saved)
        assert (cov.left, cov.center, cov.right, cov.blindspot) == (0, 1, 2, Side.LEFT)

    def test_an_outlet_is_updated_by_slug(self, session):
        import_stories(session, document(story("s-1")), now=NOW)
        session.commit()
        outlets = copy.deepcopy(OUTLETS)
        outlets[0]["bias"] = "center"

        report = import_stories(session, document(outlets=outlets), now=LATER)
        session.commit()

        assert report.outlets["lefty"] == "updated"
        lefty = session.scalar(select(Outlet).where(Outlet.slug == "lefty"))
        assert (lefty.bias, lefty.updated_at) == (Bias.CENTER, LATER)
        assert coverage(get_story(session, "s-1")).center == 2

    def test_published_at_given_wins_over_the_articles(self, session):
        given = story("s-1", published_at="2025-05-15T10:30:00+02:00")
        import_stories(session, document(given), now=NOW)
        assert get_story(session, "s-1").published_at == datetime(2025, 5, 15, 8, 30, tzinfo=UTC)

    def test_without_any_dates_the_story_is_published_at_import_time(self, session):
        undated = story(
            "s-1", articles=[{k: v for k, v in article(1).items() if k != "published_at"}]
        )
        import_stories(session, document(undated), now=NOW)
        saved = get_story(session, "s-1")
        assert saved.published_at == NOW
        assert saved.articles[0].published_at is None

    def test_the_service_flushes_and_the_caller_commits(self, session):
        report = import_stories(session, document(story("s-1"), story("s-2")), now=NOW)
        assert report.created == ["s-1", "s-2"]
        session.rollback()
        assert count(session, Story) == 0
        assert count(session, Outlet) == 0


class TestSlugs:
    def test_generated_slugs_are_unique(self, session):
        same = [story(f"s-{n}", title="Storm hits the coast") for n in range(3)]
        import_stories(session, document(*same), now=NOW)
        slugs = [get_story(session, f"s-{n}").slug for n in range(3)]
        assert slugs == ["storm-hits-the-coast", "storm-hits-the-coast-2", "storm-hits-the-coast-3"]

    def test_an_explicit_slug_is_used_and_one_taken_by_another_story_is_rejected(self, session):
        report = import_stories(
            session,
            document(story("s-1", slug="budget-vote"), story("s-2", slug="budget-vote")),
            now=NOW,
        )
        assert get_story(session, "s-1").slug == "budget-vote"
        assert get_story(session, "s-2") is None
        [error] = report.errors
        assert (error.record, error.index, error.id, error.path) == (
            "stories[1]",
            1,
            "s-2",
            "stories[1].slug",
        )
        assert "already used by story 's-1'" in error.reason

    @pytest.mark.parametrize(
        ("title", "slug"),
        [
            ("Élections: le Café de l'Été!", "elections-le-cafe-de-l-ete"),
            ("北京", "story"),
            ("word " * 40, ("word-" * 14)[:-1]),  # cut at a word, within 72
        ],
    )
    def test_slugify(self, title, slug):
        assert slugify(title) == slug
        assert len(slugify(title)) <= 72


class TestRejections:
    def test_bad_records_are_reported_and_the_good_ones_land(self, session):
        outlets = [*OUTLETS, {"slug": "broken", "name": "Broken", "bias": "leftish"}]
        data = document(
            story("good-1"),
            story("bad-url", articles=[article(1, "lefty", url="ftp://files.example/a")]),
            story("bad-outlet", articles=[article(1, "broken")]),
            story("unknown-outlet", articles=[article(1, "middle"), article(2, "nowhere")]),
            story(
                "good-2",
                articles=[article(7, {"slug": "inline", "name": "Inline", "bias": "right"})],
            ),
            outlets=outlets,
        )

        report = import_stories(session, data, now=NOW)
        session.commit()

        assert report.created == ["good-1", "good-2"]
        assert report.rejected == ["outlets[3]", "stories[1]", "stories[2]", "stories[3]"]
        by_path = {e.path: e for e in report.errors}
        assert list(by_path) == [
            "outlets[3].bias",
            "stories[1].articles[0].url",
            "stories[2].articles[0].outlet",
            "stories[3].articles[1].outlet",
        ]
        assert by_path["outlets[3].bias"].id == "broken"
        assert "must be one of: far_left, left" in by_path["outlets[3].bias"].reason
        assert "http" in by_path["stories[1].articles[0].url"].reason
        bad_outlet = by_path["stories[2].articles[0].outlet"]
        assert (bad_outlet.index, bad_outlet.id) == (2, "bad-outlet")
        assert "'broken', which was rejected (see outlets[3])" in bad_outlet.reason
        assert "unknown outlet 'nowhere'" in by_path["stories[3].articles[1].outlet"].reason

        assert set(session.scalars(select(Story.external_id))) == {"good-1", "good-2"}
        assert count(session, Article) == 4  # 3 + 1: nothing from the rejected stories
        assert set(session.scalars(select(Outlet.slug))) == {"lefty", "middle", "righty", "inline"}

    def test_a_rejected_story_writes_nothing_not_even_its_inline_outlet(self, session):
        inline = {"slug": "newcomer", "name": "Newcomer", "bias": "center"}
        bad = story("s-1", articles=[article(1, inline), article(1, "middle")])  # same URL twice

        report = import_stories(session, document(bad), now=NOW)
        session.commit()

        assert [(e.path, e.reason) for e in report.errors] == [
            ("stories[0].articles[1].url", "repeats articles[0].url")
        ]
        assert count(session, Story) == 0
        assert session.scalar(select(Outlet).where(Outlet.slug == "newcomer")) is None

    def test_a_rejected_update_leaves_the_previous_version_whole(self, session):
        import_stories(session, document(story("s-1")), now=NOW)
        session.commit()
        bad = story("s-1", title="New title", articles=[article(9, "middle"), article(10, "ghost")])

        report = import_stories(session, document(bad), now=LATER)
        session.commit()
        session.expire_all()

        assert errors_of(report) == [("stories[0]", 0, "stories[0].articles[1].outlet")]
        saved = get_story(session, "s-1")
        assert saved.title == "Council votes on the budget (s-1)"
        assert sorted(a.url[-1] for a in saved.articles) == ["1", "2", "3"]
        assert saved.updated_at == NOW

    @pytest.mark.parametrize(
        ("change", "path", "reason"),
        [
            (lambda s: s.pop("title"), "stories[0].title", "is required"),
            (lambda s: s.update(title="x" * 301), "stories[0].title", "at most 300 characters"),
            (lambda s: s.update(title="   "), "stories[0].title", "must not be blank"),
            (lambda s: s.update(title="a\x00b"), "stories[0].title", "NUL"),
            # Control characters no email can carry (MJML refuses them): Word's line break,
            # an escape, DEL; tabs and line breaks stay allowed.
            (lambda s: s.update(title="a\x0bb"), "stories[0].title", "U+000B"),
            (lambda s: s.update(overview="a\x1b[31mb"), "stories[0].overview", "U+001B"),
            (
                lambda s: s["articles"][0].update(headline="a\x7f"),
                "stories[0].articles[0].headline",
                "U+007F",
            ),
            (lambda s: s.update(overview="x" * 5001), "stories[0].overview", "at most 5000"),
            (lambda s: s.update(external_id=7), "stories[0].external_id", "must be a string"),
            (lambda s: s.update(blurb="?"), "stories[0].blurb", "not a known field"),
            (lambda s: s.update(articles=[]), "stories[0].articles", "at least 1 item"),
            (lambda s: s.update(published_at="yesterday"), "stories[0].published_at", "ISO 8601"),
            (lambda s: s.update(topics=["ok", 3]), "stories[0].topics[1]", "must be a string"),
            (
                lambda s: s.update(faq=[{"question": "Q?"}]),
                "stories[0].faq[0].answer",
                "is required",
            ),
            (lambda s: s.update(analysis_left=5), "stories[0].analysis_left", "a string or null"),
            (
                lambda s: s["articles"][0].update(published_at="2025-05-14T08:00:00"),
                "stories[0].articles[0].published_at",
                "with a time zone",
            ),
            (
                lambda s: s["articles"][0].update(url="javascript:alert(1)"),
                "stories[0].articles[0].url",
                "http:// or https://",
            ),
            (
                lambda s: s["articles"][0].update(url="https://exämple.example/a"),
                "stories[0].articles[0].url",
                "ASCII",
            ),
            (
                lambda s: s["articles"][0].update(url="https:///no-host"),
                "stories[0].articles[0].url",
                "http:// or https://",
            ),
            (
                lambda s: s["articles"][0].pop("headline"),
                "stories[0].articles[0].headline",
                "is required",
            ),
            (
                lambda s: s["articles"][0].update(outlet=5),
                "stories[0].articles[0].outlet",
                "a string or an object",
            ),
            (
                lambda s: s["articles"][0].update(outlet="Not A Slug"),
                "stories[0].articles[0].outlet",
                "lowercase",
            ),
            (
                lambda s: s["articles"][0].update(
                    outlet={"slug": "n", "name": "N", "bias": "extreme"}
                ),
                "stories[0].articles[0].outlet.bias",
                "must be one of",
            ),
            (
                lambda s: s["articles"][0].update(
                    outlet={"slug": "n", "name": "N", "bias": "left", "factuality": "sort of"}
                ),
                "stories[0].articles[0].outlet.factuality",
                "very_high, high, mostly_factual",
            ),
        ],
    )
    def test_each_problem_is_named_by_path_and_reason(self, session, change, path, reason):
        bad = story("bad")
        change(bad)

        report = import_stories(session, document(story("good"), bad), now=NOW)

        [error] = [e for e in report.errors if e.path == path.replace("stories[0]", "stories[1]")]
        assert (error.record, error.index) == ("stories[1]", 1)
        assert reason in error.reason
        assert report.created == ["good"]
        assert get_story(session, "bad") is None

    @pytest.mark.parametrize(
        ("data", "path", "reason"),
        [
            ([story()], "", "must be a JSON object"),
            ({"stories": {"s-1": story()}}, "stories", "must be an array"),
            ({"stories": [story()], "story": []}, "story", "not a known field"),
        ],
    )
    def test_a_document_of_the_wrong_shape_imports_nothing(self, session, data, path, reason):
        report = import_stories(session, data, now=NOW)
        [error] = report.errors
        assert (error.record, error.index, error.path) == (None, None, path)
        assert reason in error.reason
        assert report.rejected == ["document"]
        assert count(session, Story) == 0

    def test_the_published_schema_is_valid_json_schema_2020_12(self):
        from jsonschema import Draft202012Validator

        Draft202012Validator.check_schema(schema())
        assert schema()["$defs"]["outlet"]["properties"]["bias"]["enum"] == [b.value for b in Bias]


class TestCommand:
    def write(self, tmp_path, data, name="stories.json"):
        path = tmp_path / name
        path.write_text(json.dumps(data) if not isinstance(data, str) else data)
        return str(path)

    def test_prints_what_it_created_and_updated(self, runner, session, tmp_path):
        path = self.write(tmp_path, document(story("s-1"), story("s-2")))
        result = runner.invoke(args=["stories", "import", path])
        assert result.exit_code == 0, result.output
        assert "stories: 2 created, 0 updated, 0 unchanged" in result.output
        assert "outlets: 3 created" in result.output
        assert "created: s-1, s-2" in result.output

        path = self.write(tmp_path, document(story("s-1", title="Changed"), story("s-2")))
        result = runner.invoke(args=["stories", "import", path])
        assert result.exit_code == 0, result.output
        assert "stories: 0 created, 1 updated, 1 unchanged" in result.output
        assert "updated: s-1" in result.output
        assert get_story(session, "s-1").title == "Changed"

    def test_rejections_exit_1_with_reasons_and_the_good_records_are_kept(
        self, runner, session, tmp_path
    ):
        bad = story("s-2", articles=[article(1, "middle", url="not a url")])
        path = self.write(tmp_path, document(story("s-1"), bad))
        result = runner.invoke(args=["stories", "import", path])
        assert result.exit_code == 1
        assert "stories: 1 created" in result.output
        assert "rejected 1 record:" in result.output
        assert "stories[1] (s-2):" in result.output
        assert (
            "stories[1].articles[0].url: must be an absolute http:// or https:// URL"
            in result.output
        )
        assert [s.external_id for s in session.scalars(select(Story))] == ["s-1"]

    @pytest.mark.parametrize(
        ("content", "message"),
        [
            (None, "Cannot read"),
            (
                "{not json",
                "Not valid JSON: Expecting property name enclosed in double quotes at line 1",
            ),
            (b'{"stories": "caf\xe9"}', "not UTF-8"),  # Latin-1
            ("[" * 100_000 + "]" * 100_000, "nested too deeply"),
        ],
    )
    def test_an_unreadable_file_is_a_clear_error(self, runner, session, tmp_path, content, message):
        path = tmp_path / "stories.json"
        if isinstance(content, bytes):
            path.write_bytes(content)
        elif content is not None:
            path.write_text(content)
        result = runner.invoke(args=["stories", "import", str(path)])
        assert result.exit_code == 1
        assert isinstance(result.exception, SystemExit)
        assert "Traceback" not in result.output
        assert result.output.startswith("error: ")
        assert message in result.output
        assert count(session, Story) == 0

    def test_reads_standard_input_for_a_dash(self, runner, session):
        result = runner.invoke(args=["stories", "import", "-"], input=json.dumps(document(story())))
        assert result.exit_code == 0, result.output
        assert "created: s-1" in result.output

    def test_a_directory_is_a_clear_error(self, runner, tmp_path):
        result = runner.invoke(args=["stories", "import", str(tmp_path)])
        assert result.exit_code == 1
        assert result.output.startswith(f"error: Cannot read {tmp_path}: Is a directory")

    def test_a_document_error_says_nothing_was_imported(self, runner, tmp_path):
        result = runner.invoke(args=["stories", "import", self.write(tmp_path, "[]")])
        assert result.exit_code == 1
        assert "rejected the whole document, nothing was imported" in result.output
        assert 'must be a JSON object: {"outlets": [...], "stories": [...]}' in result.output
