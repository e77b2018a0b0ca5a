"""The public archive and web version: open to anyone, carrying nothing of any reader."""

from __future__ import annotations

import re

from sqlalchemy import select

from newsletter.billing.entitlement import Plan
from newsletter.delivery.ledger import enqueue_now
from newsletter.delivery.models import Delivery
from newsletter.editions.models import Edition, EditionStatus
from newsletter.editions.personalize import EditionMessages, Recipient
from newsletter.mail.message import now_header
from newsletter.readers.models import Reader, ReaderStatus
from tests.editions.test_edition_email import demo_edition


def sent_edition(app, session) -> Edition:  # type: ignore[no-untyped-def]
    edition = demo_edition(app, session)
    session.add(
        Reader(email="ann@example.com", email_key="ann@example.com", status=ReaderStatus.CONFIRMED)
    )
    session.flush()
    with app.app_context():
        enqueue_now(session, edition)
    session.commit()
    assert edition.status == EditionStatus.SENDING
    return edition


def test_archive_lists_sent_editions_newest_first_for_anyone(app, session, client):
    edition = sent_edition(app, session)
    page = client.get("/editions")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert f'href="/editions/{edition.date.isoformat()}"' in html
    assert edition.subject.split(" + ")[0][:30] in html


def test_web_version_shows_the_edition_with_no_reader_in_it(app, session, client):
    edition = sent_edition(app, session)
    reader = session.scalar(select(Reader))
    # What that reader's own email holds: their tracked links and unsubscribe token.
    with app.app_context():
        messages = EditionMessages(app, edition)
        _, data = messages.render(
            Recipient(reader.id, reader.email, Plan.FREE, free_left=4, trial_days_left=0),
            now_header(),
        )
    theirs = set(re.findall(rb"/(?:r|unsubscribe)/([A-Za-z0-9._-]{16,})", data))
    assert theirs

    response = client.get(f"/editions/{edition.date.isoformat()}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    for entry in edition.stories:
        assert entry.story.title.replace("'", "&#39;") in html or entry.story.title in html
        assert f'/stories/{entry.story.slug}"' in html
    assert "/r/" not in html and "/unsubscribe" not in html
    assert not any(token.decode() in html for token in theirs)
    assert reader.email not in html
    assert "free stories left" not in html  # no one's meter
    assert "subscribe free" in html.lower()
    assert "script-src" not in response.headers["Content-Security-Policy"]
    assert session.scalar(select(Delivery.state)) is not None

    # Its story links follow the meter like any anonymous visit: the story page answers.
    slug = edition.stories[0].story.slug
    assert client.get(f"/stories/{slug}").status_code == 200


def test_an_edition_not_sent_yet_is_not_public(app, session, client):
    edition = demo_edition(app, session)  # assembled ahead, no one's turn yet
    assert client.get(f"/editions/{edition.date.isoformat()}").status_code == 404
    assert edition.date.isoformat() not in client.get("/editions").get_data(as_text=True)


def test_bad_dates_and_pages_get_a_message_not_a_500(app, client):
    for path, status, words in (
        ("/editions/2026-02-30", 400, "YYYY-MM-DD"),
        ("/editions/yesterday", 400, "YYYY-MM-DD"),
        ("/editions/1999-01-01", 404, "no edition"),
        ("/editions?page=0", 400, "page"),
        ("/editions?page=abc", 400, "page"),
        ("/editions?page=99999999999999", 400, "page"),
        ("/editions?page=5", 404, "no page 5"),
    ):
        response = client.get(path)
        assert response.status_code == status, path
        assert words.lower() in response.get_data(as_text=True).lower(), path
