"""`newsletter feeds add|list|pause`: thin commands over the feed services."""

from __future__ import annotations

from sqlalchemy import select

from newsletter.feeds.models import Feed
from newsletter.stories.models import Bias, Outlet
from tests.admin.conftest import fresh
from tests.feeds.conftest import HTML_PAGE, RSS2, add_feed


def test_add_list_pause_resume(app, runner, session, feed_server):
    url = feed_server.serve("/rss2", RSS2)
    added = runner.invoke(args=["feeds", "add", "harbor-gazette", url, "--name", "Harbor Gazette"])
    assert added.exit_code == 0, added.output
    assert "outlet harbor-gazette created (unrated" in added.output
    fresh(session)
    feed = session.scalar(select(Feed))
    outlet = session.scalar(select(Outlet))
    assert (outlet.name, outlet.bias, outlet.url) == (
        "Harbor Gazette",
        Bias.UNRATED,
        "https://127.0.0.1/",
    )
    second = runner.invoke(args=["feeds", "add", "harbor-gazette", feed_server.url("/other")])
    assert second.exit_code == 0 and "created" not in second.output.split("\n")[0]
    assert runner.invoke(args=["feeds", "add", "harbor-gazette", url]).exit_code == 1
    bad = runner.invoke(args=["feeds", "add", "x", "file:///etc/passwd"])
    assert bad.exit_code == 1 and "http:// or https://" in bad.output

    assert runner.invoke(args=["feeds", "fetch", "--feed", str(feed.id)]).exit_code == 0
    listing = runner.invoke(args=["feeds", "list"]).output
    assert f"{feed.id}\tharbor-gazette\t{url}\tnext " in listing
    assert "0.3 items/day\t0 errors" in listing  # 2 new articles over 7 days

    paused = runner.invoke(args=["feeds", "pause", str(feed.id)])
    assert paused.exit_code == 0 and f"feed {feed.id} paused" in paused.output
    assert "paused" in runner.invoke(args=["feeds", "list"]).output
    fresh(session)
    assert session.get(Feed, feed.id).paused
    runner.invoke(args=["feeds", "pause", str(feed.id), "--resume"])
    fresh(session)
    assert not session.get(Feed, feed.id).paused
    missing = runner.invoke(args=["feeds", "pause", "4242"])
    assert missing.exit_code == 1 and "No feed with id 4242" in missing.output
    odd = runner.invoke(args=["feeds", "pause", "12x"])
    assert odd.exit_code == 1 and "must be a whole number" in odd.output


def test_list_shows_the_last_error(app, runner, feed_server):
    feed_id = add_feed(app, feed_server.serve("/page", HTML_PAGE, "text/html"))
    runner.invoke(args=["feeds", "fetch"])
    listing = runner.invoke(args=["feeds", "list"]).output
    assert f"{feed_id}\tgazette" in listing
    assert "1 errors\tlast error: the address returned a web page (HTML)" in listing
