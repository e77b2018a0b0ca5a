"""Text cannot break an edition, and an edition that cannot be composed waits, said once.

Through the public entrypoints: `newsletter edition send`, the worker's `deliver_due` job
and the staff edition page.
"""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import select

from jobs import tasks
from newsletter.db import utcnow
from newsletter.delivery.models import DeliveryState
from newsletter.editions.models import Edition
from newsletter.stories.importing import import_stories
from newsletter.stories.models import Story
from tests.admin.conftest import STAFF, post
from tests.admin.conftest import staff as staff  # noqa: F401  (the fixture)
from tests.delivery.conftest import (
    OUTLETS,
    add_readers,
    add_stories,
    counts_in,
    deliveries,
    inbox,
    tracked_links,
)

MARKER_TITLES = [
    "@@promo@@ Council passes the budget",
    "@@to@@ @@unsubscribe_url@@ @@message_id@@ and @@date@@ in Zürich",
    "@@link_1@@ @@free_left@@ =?utf-8?q?Hi?= =3D @@trial_days_left@@",
]
MARKER_OVERVIEW = (
    "Overview @@promo@@ =?utf-8?b?SGk=?= {{ free_left }} @@link_2@@ " + "long " * 30 + "end"
)


def import_titled(app, titles: list[str], overview: str) -> None:  # type: ignore[no-untyped-def]
    at = utcnow()
    stories = []
    for n, title in enumerate(titles):
        published = at.replace(microsecond=0).isoformat()
        stories.append(
            {
                "external_id": f"m{n}",
                "title": title,
                "overview": overview,
                "published_at": published,
                "articles": [
                    {
                        "outlet": slug,
                        "url": f"https://news.example/m{n}/{slug}",
                        "headline": f"Headline m{n} {slug}",
                        "published_at": published,
                    }
                    for slug in ("left-a", "center-a", "right-a")
                ],
            }
        )
    with app.app_context(), app.extensions["db"].session() as session:
        report = import_stories(session, {"outlets": OUTLETS, "stories": stories}, now=at)
        assert not report.errors, report.errors


def test_marker_shaped_story_text_reaches_every_reader_verbatim(app, runner, smtp):
    readers = add_readers(app, 4)
    import_titled(app, MARKER_TITLES, MARKER_OVERVIEW)

    result = runner.invoke(args=["edition", "send", "--now"])

    assert result.exit_code == 0, result.output + result.stderr
    assert counts_in(result.stdout)["sent"] == 4
    got = inbox(smtp)
    assert sorted(got) == sorted(r.email for r in readers)
    for reader in readers:
        [message] = got[reader.email]
        assert message["To"] == reader.email
        subject = str(message["Subject"])
        text = message.get_body(("plain",)).get_content()
        html = message.get_body(("html",)).get_content()
        assert MARKER_TITLES[0] in subject or any(t in subject for t in MARKER_TITLES)
        for title in MARKER_TITLES:
            assert title in text and title in html
        # The text part wraps overviews at spaces.
        assert MARKER_OVERVIEW in " ".join(text.split()) and MARKER_OVERVIEW in html
        # The real holes were all filled, with this reader's own links.
        links = tracked_links(message)
        assert len(links) >= 2 * len(MARKER_TITLES)
        assert {claim.reader_id for claim in links} == {reader.id}
        assert "/unsubscribe/" in message["List-Unsubscribe"]


def taint_a_story(app) -> tuple[int, str]:  # type: ignore[no-untyped-def]
    """A story whose title holds a vertical tab (Word's line break): MJML refuses control
    characters, so no version of the edition template can render it."""
    with app.extensions["db"].session() as session:
        story = session.scalar(select(Story).where(Story.external_id == "s1"))
        story.title = "Story s1:\x0bthe council votes on the budget"
        return story.id, story.title


def edition_row(app) -> Edition:  # type: ignore[no-untyped-def]
    with app.extensions["db"].session() as session:
        return session.scalar(select(Edition))


def test_an_edition_that_cannot_be_composed_waits_said_once_and_resumes_after_the_fix(
    app,
    runner,
    smtp,
    staff,  # noqa: F811
    monkeypatch,
    caplog,
):
    # Due all day in UTC; with the staff member (a confirmed reader too), 7 readers.
    emails = [r.email for r in add_readers(app, 6, hour=0)] + [STAFF]
    add_stories(app, utcnow())
    story_id, _ = taint_a_story(app)
    monkeypatch.setattr(tasks, "job_app", lambda: app)
    caplog.set_level(logging.INFO)

    # The worker's job, minute after minute: no exception, nothing sent, said once.
    for _ in range(3):
        tasks.deliver_due()
    told = [r for r in caplog.records if "cannot be composed" in r.getMessage()]
    assert len(told) == 1, [r.getMessage() for r in told]
    assert f"story {story_id}" in told[0].getMessage()
    assert told[0].getMessage().count("story ") == 1  # the other stories render alone
    assert "\\x0b" in told[0].getMessage()
    rows = deliveries(app)
    assert len(rows) == 7
    assert {r.state for r in rows} == {DeliveryState.QUEUED}
    assert {r.attempts for r in rows} == {0}
    assert smtp.received == []
    # The worker's other jobs go on.
    tasks.prune_rate_limits()
    tasks.assemble_ahead()

    # The CLI says why, where to fix it, and exits 1 without a traceback.
    edition = edition_row(app)
    for args in (["edition", "send"], ["edition", "send", "--now"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 1, result.output
        assert "Traceback" not in result.output + result.stderr
        assert f"cannot be composed: story {story_id}" in result.stderr
        assert "7 readers are waiting" in result.stderr
        assert f"http://localhost/admin/editions/{edition.id}" in result.stderr
    assert smtp.received == []

    # Staff see it on the edition page, and can drop the story though readers are queued.
    page = staff.get(f"/admin/editions/{edition.id}").get_data(as_text=True)
    assert "This edition cannot be composed" in page
    assert f"story {story_id}" in page and "\\x0b" in page
    assert 'value="drop"' in page
    response = post(
        staff, f"/admin/editions/{edition.id}/stories", {"story_id": story_id, "action": "drop"}
    )
    assert response.status_code == 303
    assert edition_row(app).compose_error is None
    page = staff.get(f"/admin/editions/{edition.id}").get_data(as_text=True)
    assert "This edition cannot be composed" not in page

    # The next minute's run sends to everyone, once; later runs send nothing more.
    tasks.deliver_due()
    tasks.deliver_due()
    got = inbox(smtp)
    assert sorted(got) == sorted(emails)
    assert all(len(messages) == 1 for messages in got.values())
    assert {r.state for r in deliveries(app)} == {DeliveryState.SENT}
    for messages in got.values():
        assert "Story s1" not in messages[0].get_body(("plain",)).get_content()
    result = runner.invoke(args=["edition", "send", "--now"])
    assert result.exit_code == 0, result.stderr
    assert len(smtp.received) == 7


@pytest.mark.parametrize("address", ["ann\r\nBcc: all@example.com@example.com", "zoë@example.com"])
def test_a_reader_whose_message_cannot_be_built_fails_alone(app, runner, smtp, address):
    add_readers(app, 3)
    add_stories(app, utcnow())
    from newsletter.readers.models import Reader

    with app.extensions["db"].session() as session:
        odd = session.scalar(select(Reader).where(Reader.email == "reader1@example.com"))
        odd.email = address

    result = runner.invoke(args=["edition", "send", "--now"])

    assert result.exit_code == 0, result.stderr
    assert counts_in(result.stdout)["sent"] == 2
    assert counts_in(result.stdout)["failed"] == 1
    assert sorted(inbox(smtp)) == ["reader0@example.com", "reader2@example.com"]
    [failed] = [r for r in deliveries(app) if r.state == DeliveryState.FAILED]
    assert "message could not be built" in (failed.last_reply or "")
