"""Fetching feeds from a real HTTP server on loopback: each kind of feed, and each way a
feed goes wrong, ends as a person would expect, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from flask import Flask
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.feeds.fetching import FeedResult, FetchSettings, fetch_due, fetch_feed
from newsletter.feeds.models import Feed, FeedRun, RunOutcome
from newsletter.stories.models import Article, Story
from tests.admin.conftest import fresh
from tests.feeds.conftest import (
    ATOM,
    BAD_ENCODING,
    HTML_PAGE,
    MALFORMED,
    RSS1,
    RSS2,
    add_feed,
    etag_route,
    gzip_route,
    huge_route,
    redirect_route,
    rss_with,
    slow_route,
)

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def run(app: Flask, feed_id: int, now: datetime = NOW) -> FeedResult:
    with app.app_context():
        return fetch_feed(app.extensions["db"], feed_id, FetchSettings.from_config(app.config), now)


def articles(session: Session) -> list[Article]:
    fresh(session)
    return list(session.scalars(select(Article).order_by(Article.id)))


def feed_row(session: Session, feed_id: int) -> Feed:
    fresh(session)
    feed = session.get(Feed, feed_id)
    assert feed is not None
    return feed


class TestFeedFormats:
    def test_rss2_items_become_articles_with_clean_text(self, app, session, feed_server):
        feed_id = add_feed(app, feed_server.serve("/rss2", RSS2))
        result = run(app, feed_id)
        assert result.outcome == RunOutcome.OK, result.error
        assert (result.report.fetched, result.report.new) == (2, 2)
        found = {a.guid: a for a in articles(session)}
        budget = found["gazette-7"]
        assert budget.headline == "Council approves new harbor budget & tax plan"
        assert (
            budget.lede == "The city council approved the harbor budget on Monday. Taxes rise 2%."
        )
        assert budget.published_at == datetime(2026, 3, 9, 13, 30, tzinfo=UTC)
        assert budget.canonical_url == "https://gazette.example/news/harbor-budget?id=7"
        assert budget.feed_id == feed_id
        assert found["https://gazette.example/news/ferry-strike"].headline == (
            "Ferry strike ends after three days"
        )
        feed = feed_row(session, feed_id)
        assert feed.last_success_at == NOW and feed.items_seen == 2 and feed.last_error is None
        assert feed.next_fetch_at == NOW + timedelta(minutes=30)
        run_row = session.scalar(select(FeedRun).where(FeedRun.feed_id == feed_id))
        assert (run_row.fetched, run_row.new, run_row.duplicate) == (2, 2, 0)
        assert run_row.new_stories + run_row.clustered == 2

    def test_rss1_rdf(self, app, session, feed_server):
        feed_id = add_feed(app, feed_server.serve("/rss1", RSS1, "application/rdf+xml"))
        assert run(app, feed_id).outcome == RunOutcome.OK
        (article,) = articles(session)
        assert article.headline == "Lighthouse restored after storm damage"
        assert article.published_at == datetime(2026, 3, 9, 7, 15, tzinfo=UTC)

    def test_atom_with_relative_link_and_html_title(self, app, session, feed_server):
        url = feed_server.serve("/atom", ATOM, "application/atom+xml")
        feed_id = add_feed(app, url)
        assert run(app, feed_id).outcome == RunOutcome.OK
        (article,) = articles(session)
        assert article.headline == "Mayor\u2019s plan for bike lanes"
        assert article.lede == "Twelve new lanes, city-wide."
        assert article.url == feed_server.url("/stories/bike-lanes")
        assert article.guid == "tag:atom.example,2026:bike-lanes"
        assert article.published_at == datetime(2026, 3, 9, 13, 0, tzinfo=UTC)

    def test_bad_encoding_declaration_still_reads(self, app, session, feed_server):
        feed_id = add_feed(app, feed_server.serve("/enc", BAD_ENCODING, "text/xml"))
        result = run(app, feed_id)
        assert result.outcome == RunOutcome.OK, result.error
        (article,) = articles(session)
        # Declared Latin-1, sent UTF-8: the headline is whatever feedparser decoded,
        # but it arrives, as plain text, and nothing fails.
        assert "caf" in article.headline and "reopens" in article.headline

    def test_gzip_body_is_decoded(self, app, session, feed_server):
        feed_server.routes["/gz"] = gzip_route(RSS2.encode())
        feed_id = add_feed(app, feed_server.url("/gz"))
        assert run(app, feed_id).outcome == RunOutcome.OK
        assert "gzip" in feed_server.headers["/gz"]["Accept-Encoding"]
        assert len(articles(session)) == 2

    def test_second_fetch_after_etag_is_a_free_304(self, app, session, feed_server):
        feed_server.routes["/etag"] = etag_route(RSS2.encode(), '"v1"')
        feed_id = add_feed(app, feed_server.url("/etag"))
        assert run(app, feed_id).outcome == RunOutcome.OK
        assert feed_row(session, feed_id).etag == '"v1"'
        later = NOW + timedelta(hours=1)
        result = run(app, feed_id, later)
        assert result.outcome == RunOutcome.NOT_MODIFIED
        assert feed_server.headers["/etag"]["If-None-Match"] == '"v1"'
        assert feed_server.headers["/etag"]["If-Modified-Since"]
        assert len(articles(session)) == 2
        feed = feed_row(session, feed_id)
        assert feed.last_success_at == later and feed.items_seen == 2
        runs = session.scalars(select(FeedRun.outcome).order_by(FeedRun.id)).all()
        assert runs == [RunOutcome.OK, RunOutcome.NOT_MODIFIED]

    def test_refetch_counts_duplicates_and_adds_nothing(self, app, session, feed_server):
        feed_id = add_feed(app, feed_server.serve("/rss2", RSS2))
        run(app, feed_id)
        again = run(app, feed_id, NOW + timedelta(hours=1))
        assert (again.report.new, again.report.duplicate) == (0, 2)
        assert len(articles(session)) == 2


class TestBrokenFeeds:
    def assert_failed(self, app, session, feed_id: int, words: str) -> Feed:
        feed = feed_row(session, feed_id)
        assert feed.last_error is not None and words in feed.last_error, feed.last_error
        assert feed.last_error_at == NOW and feed.consecutive_errors == 1
        assert feed.last_success_at is None
        # Backoff: twice the interval after one error.
        assert feed.next_fetch_at == NOW + timedelta(minutes=60)
        assert session.scalar(select(func.count()).select_from(Article)) == 0
        run_row = session.scalar(select(FeedRun).where(FeedRun.feed_id == feed_id))
        assert run_row.outcome == RunOutcome.ERROR and words in run_row.error
        return feed

    def test_malformed_feed(self, app, session, feed_server):
        feed_id = add_feed(app, feed_server.serve("/bad", MALFORMED))
        assert run(app, feed_id).outcome == RunOutcome.ERROR
        self.assert_failed(app, session, feed_id, "not a well-formed RSS or Atom feed")

    def test_html_page(self, app, session, feed_server):
        feed_id = add_feed(app, feed_server.serve("/page", HTML_PAGE, "text/html; charset=utf-8"))
        run(app, feed_id)
        self.assert_failed(app, session, feed_id, "web page (HTML), not an RSS or Atom feed")

    def test_slow_response_times_out(self, app, session, feed_server):
        feed_server.routes["/slow"] = slow_route(1.5, RSS2.encode())
        feed_id = add_feed(app, feed_server.url("/slow"))
        run(app, feed_id)
        self.assert_failed(app, session, feed_id, "timed out after 0.5 seconds")

    def test_redirect_loop(self, app, session, feed_server):
        feed_server.routes["/loop-a"] = redirect_route("/loop-b")
        feed_server.routes["/loop-b"] = redirect_route(feed_server.url("/loop-a"))
        feed_id = add_feed(app, feed_server.url("/loop-a"))
        run(app, feed_id)
        self.assert_failed(app, session, feed_id, "redirected more than 3 times")
        assert feed_server.hits["/loop-a"] + feed_server.hits["/loop-b"] == 4

    def test_redirect_to_a_feed_is_followed(self, app, session, feed_server):
        feed_server.serve("/moved", RSS2)
        feed_server.routes["/old"] = redirect_route("/moved")
        feed_id = add_feed(app, feed_server.url("/old"))
        assert run(app, feed_id).outcome == RunOutcome.OK
        assert len(articles(session)) == 2

    def test_fifty_megabyte_body_is_cut_off(self, app, session, feed_server):
        feed_server.routes["/huge"] = huge_route(50 * 1024 * 1024)
        feed_id = add_feed(app, feed_server.url("/huge"))
        run(app, feed_id)
        self.assert_failed(app, session, feed_id, "larger than 1024 KB")

    def test_declared_length_over_the_cap_is_refused_unread(self, app, session, feed_server):
        feed_server.serve("/big", b"<rss>" + b" " * (2 * 1024 * 1024))
        feed_id = add_feed(app, feed_server.url("/big"))
        run(app, feed_id)
        feed = self.assert_failed(app, session, feed_id, "larger than 1024 KB")
        assert feed.items_seen == 0

    def test_http_error_status(self, app, session, feed_server):
        feed_id = add_feed(app, feed_server.url("/missing"))
        run(app, feed_id)
        self.assert_failed(app, session, feed_id, "HTTP 404")

    def test_backoff_grows_and_success_resets_it(self, app, session, feed_server):
        feed_id = add_feed(app, feed_server.url("/flaky"))
        run(app, feed_id)
        run(app, feed_id, NOW + timedelta(hours=1))
        feed = feed_row(session, feed_id)
        assert feed.consecutive_errors == 2
        assert feed.next_fetch_at == NOW + timedelta(hours=1) + timedelta(minutes=120)
        feed_server.serve("/flaky", RSS2)
        run(app, feed_id, NOW + timedelta(hours=4))
        feed = feed_row(session, feed_id)
        assert feed.consecutive_errors == 0 and feed.last_success_at is not None
        assert feed.last_error is not None  # kept for staff, with its time
        assert feed.next_fetch_at == NOW + timedelta(hours=4, minutes=30)


class TestRuns:
    def test_one_broken_feed_never_stops_the_others(self, app, session, feed_server):
        broken = [
            add_feed(app, feed_server.serve("/page", HTML_PAGE, "text/html"), slug="one"),
            add_feed(app, feed_server.serve("/bad", MALFORMED), slug="two"),
            add_feed(app, feed_server.url("/nothing-here"), slug="three"),
        ]
        good = add_feed(app, feed_server.serve("/rss2", RSS2), slug="four")
        paused = add_feed(app, feed_server.serve("/atom", ATOM), slug="five")
        with app.extensions["db"].session() as s:
            s.get(Feed, paused).paused = True
            for feed in s.scalars(select(Feed)):
                feed.next_fetch_at = NOW - timedelta(minutes=1)
        with app.app_context():
            results = fetch_due(app.extensions["db"], FetchSettings.from_config(app.config), NOW)
        outcomes = {r.feed_id: r.outcome for r in results}
        assert outcomes == {**dict.fromkeys(broken, RunOutcome.ERROR), good: RunOutcome.OK}
        assert {a.feed_id for a in articles(session)} == {good}
        assert "/atom" not in feed_server.hits
        settings = FetchSettings.from_config(app.config)
        with app.app_context():
            # Not due again until their own next time.
            assert fetch_due(app.extensions["db"], settings, NOW) == []
            # Run records past 30 days are pruned by a later run.
            fetch_due(app.extensions["db"], settings, NOW + timedelta(days=31))
        fresh(session)
        old_runs = select(func.count()).select_from(FeedRun).where(FeedRun.started_at == NOW)
        assert session.scalar(old_runs) == 0

    def test_cli_fetch_reports_and_exits_1_on_error(self, app, runner, session, feed_server):
        good = add_feed(app, feed_server.serve("/rss2", RSS2))
        bad = add_feed(app, feed_server.serve("/page", HTML_PAGE, "text/html"), slug="other")
        result = runner.invoke(args=["feeds", "fetch"])
        assert result.exit_code == 1, result.output
        assert f"feed {good}: 2 fetched, 2 new, 0 duplicate" in result.output
        assert f"feed {bad}: error: the address returned a web page" in result.output
        one = runner.invoke(args=["feeds", "fetch", "--feed", str(good)])
        assert one.exit_code == 0 and "0 new, 2 duplicate" in one.output
        assert runner.invoke(args=["feeds", "fetch", "--feed", "999"]).exit_code == 1
        assert (
            "No feed with id 999" in runner.invoke(args=["feeds", "fetch", "--feed", "999"]).output
        )

    def test_fetched_items_become_stories(self, app, session, feed_server):
        five = [
            ("left", "Harbor bridge collapses during morning rush in Port Ellis"),
            ("lean-left", "Port Ellis Harbor bridge collapse injures dozens of commuters"),
            ("center", "Harbor bridge in Port Ellis collapses, dozens injured"),
            ("lean-right", "Dozens injured as Port Ellis Harbor bridge collapses"),
            ("right", "Port Ellis Harbor bridge collapse: dozens of commuters injured"),
        ]
        for slug, title in five:
            url = feed_server.serve(
                f"/{slug}", rss_with([(f"{slug}-1", f"https://{slug}.example/bridge", title)])
            )
            add_feed(app, url, slug=slug)
        other = rss_with(
            [("x-1", "https://center.example/vote", "School board vote on lunch menus")]
        )
        add_feed(app, feed_server.serve("/other", other), slug="center")
        runner = app.test_cli_runner()
        result = runner.invoke(args=["feeds", "fetch"])
        assert result.exit_code == 0, result.output
        fresh(session)
        stories = session.scalars(select(Story)).all()
        sizes = sorted(len(s.articles) for s in stories)
        assert sizes == [1, 5], [(s.title, [a.headline for a in s.articles]) for s in stories]


class TestPrivateAddresses:
    def test_loopback_refused_without_the_setting(self, app, session, feed_server):
        app.config["FEEDS_ALLOW_PRIVATE"] = False
        feed_id = add_feed(app, feed_server.serve("/rss2", RSS2))
        result = run(app, feed_id)
        assert result.outcome == RunOutcome.ERROR
        assert result.error == "refused: 127.0.0.1 is a loopback address"
        assert "/rss2" not in feed_server.hits
        assert session.scalar(select(func.count()).select_from(Article)) == 0

    def test_private_reserved_and_mapped_addresses_refused(self):
        """Checked for every address a host resolves to, on every redirect hop."""
        from newsletter.feeds.http import FetchError, FetchLimits, check_address

        unspecified = "0.0.0.0"  # noqa: S104 - an address to refuse, not to bind
        private = ["10.0.0.1", "192.168.1.1", "169.254.169.254", "::1", "224.0.0.1"]
        for address in [*private, "::ffff:127.0.0.1", unspecified, "100.64.0.1", "fe80::1"]:
            try:
                check_address(address, allow_private=False)
            except FetchError as exc:
                assert exc.message.startswith("refused: ")
            else:
                raise AssertionError(f"{address} was let through")
        check_address("93.184.215.14", allow_private=False)
        assert FetchLimits().allow_private is False


class TestTls:
    def test_https_connects_to_the_checked_address_and_verifies_the_name(
        self, app, session, feed_server
    ):
        """An HTTPS feed is fetched from the resolved address with the certificate checked
        against the host name: one from an authority nobody trusts is refused."""
        import ssl
        import threading
        from http.server import ThreadingHTTPServer

        import trustme

        authority = trustme.CA()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        authority.issue_cert("localhost").configure_cert(context)
        handler = feed_server._httpd.RequestHandlerClass
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            feed_server.serve("/rss2", RSS2)
            feed_id = add_feed(app, f"https://localhost:{httpd.server_address[1]}/rss2")
            result = run(app, feed_id)
        finally:
            httpd.shutdown()
            httpd.server_close()
        assert result.outcome == RunOutcome.ERROR
        assert result.error.startswith("the secure connection failed"), result.error
        assert "certificate" in result.error
        assert session.scalar(select(func.count()).select_from(Article)) == 0
