"""Staff feed pages: add, edit, pause and resume feeds, set an outlet's own rating, see
health and runs; CSRF on every form, every action audited."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from newsletter.admin.models import AuditEntry
from newsletter.db import utcnow
from newsletter.feeds.models import Feed, FeedRun, RunOutcome
from newsletter.stories.models import Bias, Factuality, Outlet, RatingSource
from tests.admin.conftest import STAFF, fresh, post


def audit_actions(session) -> list[tuple[str, str, str]]:
    fresh(session)
    return [
        (e.action, e.target, e.staff_email)
        for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))
    ]


def test_add_feed_for_a_new_outlet_then_edit_pause_resume(app, staff, session):
    response = post(
        staff, "/admin/feeds", {"outlet": "harbor-news", "url": " https://harbor.example/rss "}
    )
    assert response.status_code == 303
    fresh(session)
    feed = session.scalar(select(Feed))
    assert feed.url == "https://harbor.example/rss" and not feed.paused
    assert feed.outlet.slug == "harbor-news" and feed.outlet.bias == Bias.UNRATED
    assert response.headers["Location"].endswith(f"/admin/feeds/{feed.id}")

    page = staff.get(f"/admin/feeds/{feed.id}").get_data(as_text=True)
    assert "Not fetched yet." in page and "never rated" in page

    assert (
        post(staff, f"/admin/feeds/{feed.id}", {"url": "https://harbor.example/atom"}).status_code
        == 303
    )
    assert post(staff, f"/admin/feeds/{feed.id}/pause").status_code == 303
    fresh(session)
    feed = session.get(Feed, feed.id)
    assert feed.url == "https://harbor.example/atom" and feed.paused
    assert "paused" in staff.get(f"/admin/feeds/{feed.id}").get_data(as_text=True)
    post(staff, f"/admin/feeds/{feed.id}/resume")
    fresh(session)
    assert not session.get(Feed, feed.id).paused
    actions = [a for a, _, _ in audit_actions(session)]
    assert actions == ["feed.add", "feed.edit", "feed.pause", "feed.resume"]
    assert {who for _, _, who in audit_actions(session)} == {STAFF}


def test_bad_input_is_a_message_and_writes_nothing(app, staff, session):
    for data, words in [
        ({"outlet": "x", "url": "ftp://files.example/feed"}, "must start with http:// or https://"),
        ({"outlet": "x", "url": "https://user:pw@a.example/"}, "user name or password"),
        ({"outlet": "Bad Slug!", "url": "https://a.example/rss"}, "The outlet must be a slug"),
        ({"outlet": "x", "url": "https://a.example/" + "a" * 2100}, "at most 2000"),
    ]:
        response = post(staff, "/admin/feeds", data, follow_redirects=True)
        assert response.status_code == 200
        assert words in response.get_data(as_text=True), words
    post(staff, "/admin/feeds", {"outlet": "ok", "url": "https://a.example/rss"})
    dup = post(
        staff,
        "/admin/feeds",
        {"outlet": "ok", "url": "https://a.example/rss"},
        follow_redirects=True,
    )
    assert "already added" in dup.get_data(as_text=True)
    fresh(session)
    assert len(session.scalars(select(Feed)).all()) == 1
    assert len(session.scalars(select(Outlet)).all()) == 1
    assert [a for a, _, _ in audit_actions(session)] == ["feed.add"]
    assert post(staff, "/admin/feeds/999/pause").status_code == 404


def test_every_form_needs_csrf(app, staff, session):
    post(staff, "/admin/feeds", {"outlet": "ok", "url": "https://a.example/rss"})
    fresh(session)
    feed = session.scalar(select(Feed))
    for path, data in [
        ("/admin/feeds", {"outlet": "new", "url": "https://b.example/rss"}),
        (f"/admin/feeds/{feed.id}", {"url": "https://c.example/rss"}),
        (f"/admin/feeds/{feed.id}/pause", {}),
        (f"/admin/outlets/{feed.outlet_id}/rating", {"bias": "left", "factuality": "high"}),
    ]:
        assert staff.post(path, data=data).status_code == 400, path
    fresh(session)
    feed = session.get(Feed, feed.id)
    assert feed.url == "https://a.example/rss" and not feed.paused
    assert feed.outlet.bias == Bias.UNRATED
    assert len(session.scalars(select(Feed)).all()) == 1


def test_staff_rating_is_recorded_and_audited(app, staff, session):
    post(staff, "/admin/feeds", {"outlet": "ok", "url": "https://a.example/rss"})
    fresh(session)
    feed = session.scalar(select(Feed))
    response = post(
        staff,
        f"/admin/outlets/{feed.outlet_id}/rating",
        {"bias": "lean_right", "factuality": "mostly_factual", "feed_id": str(feed.id)},
    )
    assert response.headers["Location"].endswith(f"/admin/feeds/{feed.id}")
    fresh(session)
    outlet = session.get(Outlet, feed.outlet_id)
    assert (outlet.bias, outlet.factuality) == (Bias.LEAN_RIGHT, Factuality.MOSTLY_FACTUAL)
    assert (outlet.rating_source, outlet.rating_set_by) == (RatingSource.STAFF, STAFF)
    assert audit_actions(session)[-1] == ("outlet.rating", "ok", STAFF)
    page = staff.get(f"/admin/feeds/{feed.id}").get_data(as_text=True)
    assert f"set by {STAFF} (staff: ratings files leave it alone)" in page
    bad = post(
        staff, f"/admin/outlets/{feed.outlet_id}/rating", {"bias": "sideways", "factuality": "high"}
    )
    assert bad.status_code == 303
    fresh(session)
    assert session.get(Outlet, feed.outlet_id).bias == Bias.LEAN_RIGHT
    # The return target is only ever a feed page of this site.
    odd = post(
        staff,
        f"/admin/outlets/{feed.outlet_id}/rating",
        {"bias": "left", "factuality": "high", "feed_id": "//evil.example"},
    )
    assert odd.headers["Location"].endswith("/admin/feeds")


def test_health_and_runs_are_shown(app, staff, session):
    post(staff, "/admin/feeds", {"outlet": "ok", "url": "https://a.example/rss"})
    fresh(session)
    feed = session.scalar(select(Feed))
    now = utcnow()
    with app.extensions["db"].session() as s:
        f = s.get(Feed, feed.id)
        f.last_fetch_at = f.last_error_at = now
        f.last_error, f.consecutive_errors = "timed out after 20 seconds", 1
        s.add_all(
            [
                FeedRun(
                    feed_id=feed.id,
                    started_at=now - timedelta(days=1),
                    outcome=RunOutcome.OK,
                    http_status=200,
                    fetched=30,
                    new=21,
                    duplicate=9,
                    clustered=15,
                    new_stories=6,
                ),  # fmt: skip
                FeedRun(
                    feed_id=feed.id,
                    started_at=now,
                    outcome=RunOutcome.ERROR,
                    error="timed out after 20 seconds",
                ),  # fmt: skip
            ]
        )
    listing = staff.get("/admin/feeds").get_data(as_text=True)
    assert "timed out after 20 seconds" in listing and "failing" in listing
    assert "<td>3.0</td>" in listing  # 21 new articles over 7 days
    page = staff.get(f"/admin/feeds/{feed.id}").get_data(as_text=True)
    assert "3.0 (last 7 days; 1 failed fetches of 2)" in page
    assert "<td>30</td><td>21</td><td>9</td><td>15</td><td>6</td>" in page
