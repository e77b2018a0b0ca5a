"""The stories review queue: staff merge, split, edit, publish and hide, each with its
CSRF token and an audit entry; only published stories reach an edition."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from newsletter.admin.models import AuditEntry
from newsletter.editions.assembly import NoStories, assemble
from newsletter.editions.models import Edition, EditionStatus, EditionStory
from newsletter.stories.ingest import ingest_articles
from newsletter.stories.models import Article, Outlet, Story, StoryStatus
from tests.admin.conftest import fresh, post
from tests.stories.test_ingest import BRIDGE, ELECTION, NOW, items, outlets


@pytest.fixture
def two_stories(app, session):  # type: ignore[no-untyped-def]
    """The bridge collapse and the farm bill, as candidate stories from the feeds."""
    ids = outlets(session)
    with app.app_context():
        ingest_articles(
            session, items(ids, BRIDGE, "bridge") + items(ids, ELECTION, "farm"), now=NOW
        )
    session.commit()
    by_title = {}
    for story in session.scalars(select(Story)):
        key = "bridge" if "bridge" in story.articles[0].url else "farm"
        by_title[key] = story.id
    assert len(by_title) == 2
    return by_title


def audit_actions(session) -> list[str]:  # type: ignore[no-untyped-def]
    fresh(session)
    return [a.action for a in session.scalars(select(AuditEntry).order_by(AuditEntry.id))]


def test_the_queue_lists_candidates_with_articles_outlets_and_coverage(staff, two_stories):
    page = staff.get("/admin/stories").get_data(as_text=True)
    assert BRIDGE[1][1] in page and ELECTION[1][1] in page
    assert "Candidate (2)" in page
    assert "Left Times: " + BRIDGE[0][1] in page
    # Five outlets: two left, one center, two right.
    assert "2 / 1 / 2" in page
    story = staff.get(f"/admin/stories/{two_stories['bridge']}").get_data(as_text=True)
    assert "5 outlets: left 2, center 1, right 2" in story
    assert (
        staff.get("/admin/stories?status=hidden").get_data(as_text=True).count("No hidden stories.")
        == 1
    )
    assert staff.get("/admin/stories?status=bogus").status_code == 400


def test_publish_then_the_next_edition_is_assembled_from_it(app, staff, session, two_stories):
    with app.app_context(), pytest.raises(NoStories):
        assemble(session, NOW.date(), now=NOW + timedelta(hours=1))
    session.rollback()
    response = post(staff, f"/admin/stories/{two_stories['bridge']}/status", {"action": "publish"})
    assert response.status_code == 303
    fresh(session)
    assert session.get(Story, two_stories["bridge"]).status == StoryStatus.PUBLISHED
    assert audit_actions(session) == ["story.publish"]
    with app.app_context():
        result = assemble(session, NOW.date(), now=NOW + timedelta(hours=1))
        assert [es.story_id for es in result.edition.stories] == [two_stories["bridge"]]
    session.rollback()

    post(staff, f"/admin/stories/{two_stories['farm']}/status", {"action": "hide"})
    fresh(session)
    assert session.get(Story, two_stories["farm"]).status == StoryStatus.HIDDEN
    page = staff.get("/admin/stories?status=hidden").get_data(as_text=True)
    assert ELECTION[1][1] in page
    assert audit_actions(session) == ["story.publish", "story.hide"]


def test_merge_moves_every_article_and_deletes_the_other_story(staff, session, two_stories):
    bridge, farm = two_stories["bridge"], two_stories["farm"]
    response = post(staff, f"/admin/stories/{bridge}/merge", {"story_ids": str(farm)})
    assert response.status_code == 303
    fresh(session)
    assert session.get(Story, farm) is None
    assert len(session.get(Story, bridge).articles) == 8
    assert audit_actions(session) == ["story.merge"]
    (entry,) = session.scalars(select(AuditEntry)).all()
    assert entry.target == f"story {bridge}" and str(farm) in entry.detail


def test_split_moves_the_ticked_articles_to_a_new_story(staff, session, two_stories):
    bridge = two_stories["bridge"]
    fresh(session)
    moving = [a.id for a in session.get(Story, bridge).articles][:2]
    response = post(staff, f"/admin/stories/{bridge}/split", {"article_id": moving})
    assert response.status_code == 303
    fresh(session)
    stories = session.scalars(select(Story).order_by(Story.id)).all()
    assert len(stories) == 3
    new = stories[-1]
    assert sorted(a.id for a in new.articles) == sorted(moving)
    assert new.status == StoryStatus.CANDIDATE and new.edited_at is not None
    assert len(session.get(Story, bridge).articles) == 3
    assert audit_actions(session) == ["story.split"]

    # Into an existing story, by id.
    farm = two_stories["farm"]
    one = [a.id for a in session.get(Story, bridge).articles][:1]
    post(staff, f"/admin/stories/{bridge}/split", {"article_id": one, "into": str(farm)})
    fresh(session)
    assert one[0] in [a.id for a in session.get(Story, farm).articles]
    assert audit_actions(session) == ["story.split", "story.split"]


def test_splitting_off_every_article_or_none_is_refused(staff, session, two_stories):
    bridge = two_stories["bridge"]
    fresh(session)
    every = [a.id for a in session.get(Story, bridge).articles]
    page = post(
        staff, f"/admin/stories/{bridge}/split", {"article_id": every}, follow_redirects=True
    )
    assert "leaves at least one article behind" in page.get_data(as_text=True)
    page = post(staff, f"/admin/stories/{bridge}/split", {}, follow_redirects=True)
    assert "Choose one or more" in page.get_data(as_text=True)
    other = [a.id for a in session.get(Story, two_stories["farm"]).articles][:1]
    page = post(
        staff, f"/admin/stories/{bridge}/split", {"article_id": other}, follow_redirects=True
    )
    assert "Choose one or more" in page.get_data(as_text=True)
    page = post(staff, f"/admin/stories/{bridge}/split", {"article_id": "x"}, follow_redirects=True)
    assert "must be a whole number" in page.get_data(as_text=True)
    fresh(session)
    assert session.scalar(select(func.count()).select_from(Story)) == 2
    assert audit_actions(session) == []


def test_a_story_in_a_sent_edition_cannot_be_split_or_merged_away(staff, session, two_stories):
    bridge, farm = two_stories["bridge"], two_stories["farm"]
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
    session.add(EditionStory(edition_id=edition.id, story_id=bridge, position=0))
    session.commit()
    fresh(session)
    one = [a.id for a in session.get(Story, bridge).articles][:1]
    page = post(staff, f"/admin/stories/{bridge}/split", {"article_id": one}, follow_redirects=True)
    assert "keeps its articles" in page.get_data(as_text=True)
    page = post(
        staff, f"/admin/stories/{farm}/merge", {"story_ids": str(bridge)}, follow_redirects=True
    )
    assert "keeps its articles" in page.get_data(as_text=True)
    fresh(session)
    assert len(session.get(Story, bridge).articles) == 5
    assert audit_actions(session) == []
    # Merging the other story into it is fine: it gains articles.
    post(staff, f"/admin/stories/{bridge}/merge", {"story_ids": str(farm)})
    fresh(session)
    assert len(session.get(Story, bridge).articles) == 8


def test_edit_title_overview_and_analysis_and_clustering_leaves_them(
    app, staff, session, two_stories
):
    bridge = two_stories["bridge"]
    form = {
        "title": "Harbor bridge falls in Port Ellis",
        "overview": "The bridge fell; dozens were hurt.",
        "analysis_left": "Infrastructure spending.",
        "analysis_center": "",
        "analysis_right": "Oversight failures.",
    }
    assert post(staff, f"/admin/stories/{bridge}", form).status_code == 303
    fresh(session)
    story = session.get(Story, bridge)
    assert (story.title, story.overview) == (form["title"], form["overview"])
    assert (story.analysis_left, story.analysis_center, story.analysis_right) == (
        "Infrastructure spending.",
        None,
        "Oversight failures.",
    )
    assert audit_actions(session) == ["story.edit"]
    # A later article joins the story but does not retitle it.
    courier = session.scalar(select(Outlet.id).where(Outlet.slug == "center-courier"))
    late = items({"center-courier": courier}, [("center-courier", *BRIDGE[1][1:])], "late", NOW)
    with app.app_context():
        report = ingest_articles(session, late, now=NOW + timedelta(hours=1))
    session.commit()
    assert report.clustered == 1
    fresh(session)
    assert session.get(Story, bridge).title == form["title"]

    page = post(staff, f"/admin/stories/{bridge}", {**form, "title": "  "}, follow_redirects=True)
    assert "The title cannot be empty." in page.get_data(as_text=True)
    fresh(session)
    assert session.get(Story, bridge).title == form["title"]


def test_every_form_needs_its_csrf_token(staff, session, two_stories):
    bridge, farm = two_stories["bridge"], two_stories["farm"]
    for path, data in (
        (f"/admin/stories/{bridge}/status", {"action": "publish"}),
        (f"/admin/stories/{bridge}/merge", {"story_ids": str(farm)}),
        (f"/admin/stories/{bridge}/split", {"article_id": "1"}),
        (f"/admin/stories/{bridge}", {"title": "x", "overview": "y"}),
    ):
        response = staff.post(path, data=data)
        assert response.status_code == 400, path
    fresh(session)
    assert session.scalar(select(func.count()).select_from(Story)) == 2
    assert session.get(Story, bridge).status == StoryStatus.CANDIDATE
    assert session.scalar(select(func.count()).select_from(Article)) == 8
    assert audit_actions(session) == []
    assert staff.get("/admin/stories/99999").status_code == 404
