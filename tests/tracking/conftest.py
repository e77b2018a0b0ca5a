"""An edition with stories and confirmed readers, and the edition emails they received."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from newsletter.billing.entitlement import Plan
from newsletter.editions.assembly import assemble
from newsletter.editions.models import Edition, EditionStatus
from newsletter.editions.personalize import EditionMessages, Recipient
from newsletter.mail.message import now_header
from newsletter.mail.transports import SmtpTransport
from newsletter.readers.models import Reader, ReaderStatus
from newsletter.stories.importing import import_stories

NOW = datetime.now(UTC)
_LINK = re.compile(r"(https?://[^/\s\"<>]+/r/[A-Za-z0-9_-]+)")


def story_doc(n: int, *, center: bool = True, analyses: bool = True) -> dict:
    outlets = ["left-a", "left-b", "right-a", "right-b"] + (["center-a"] if center else [])
    return {
        "external_id": f"t{n}",
        "title": f"Tracked story number {n}",
        "overview": f"Overview of story {n}: what happened and why it matters to readers.",
        "analysis_left": f"Left view of story {n}." if analyses else None,
        "analysis_center": None,
        "analysis_right": f"Right view of story {n}." if analyses else None,
        "faq": [{"question": f"What is story {n}?", "answer": "A test story."}],
        "published_at": NOW.isoformat(),
        "articles": [
            {
                "outlet": o,
                "url": f"https://news.example/{n}/{o}",
                "headline": f"{o} on story {n}",
                "published_at": NOW.isoformat(),
            }
            for o in outlets
        ],
    }


OUTLETS = [
    {"slug": "left-a", "name": "Left A", "bias": "left", "factuality": "high"},
    {"slug": "left-b", "name": "Left B", "bias": "lean_left", "factuality": "mixed"},
    {"slug": "center-a", "name": "Center A", "bias": "center", "factuality": "very_high"},
    {"slug": "right-a", "name": "Right A", "bias": "right", "factuality": "mostly_factual"},
    {"slug": "right-b", "name": "Right B", "bias": "far_right", "factuality": "low"},
]


@dataclass
class Sent:
    edition: Edition
    links: dict[str, list[str]]  # reader email -> tracked link paths, in story order


def make_reader(session, email: str, timezone: str = "UTC") -> Reader:  # type: ignore[no-untyped-def]
    reader = Reader(
        email=email, email_key=email.lower(), status=ReaderStatus.CONFIRMED, timezone=timezone
    )
    session.add(reader)
    session.flush()
    return reader


@pytest.fixture
def sent_edition(app, session, smtp) -> Sent:  # type: ignore[no-untyped-def]
    return send_edition(app, session, smtp)


def send_edition(app, session, smtp) -> Sent:  # type: ignore[no-untyped-def]
    """Five stories (one with no Center coverage), two readers, the edition emailed to them
    through the real SMTP server; returns the tracked links each reader got."""
    docs = [story_doc(1, center=False, analyses=False)] + [story_doc(n) for n in range(2, 6)]
    report = import_stories(session, {"outlets": OUTLETS, "stories": docs}, now=NOW)
    assert not report.rejected
    readers = [make_reader(session, "ann@example.com"), make_reader(session, "bob@example.com")]
    session.commit()
    with app.app_context():
        edition = assemble(session, NOW.date(), now=NOW).edition
        session.commit()
        messages = EditionMessages(app, edition)
    transport = SmtpTransport(smtp.url, timeout=5)
    for reader in readers:
        _, data = messages.render(
            Recipient(reader.id, reader.email, Plan.FREE, free_left=10), now_header()
        )
        transport.send_bytes("daily@bothsides.test", reader.email, data)
    transport.close()
    edition.status = EditionStatus.SENT  # as the send loop leaves it (its web version is public)
    session.commit()
    links = {}
    for reader in readers:
        [message] = smtp.wait_for(reader.email)
        html = message.get_body(("html",)).get_content()
        found = list(dict.fromkeys(_LINK.findall(html)))
        links[reader.email] = found
    return Sent(edition, links)


def reads_count(session) -> int:  # type: ignore[no-untyped-def]
    from sqlalchemy import func

    from newsletter.tracking.models import Read

    session.rollback()
    return session.scalar(select(func.count()).select_from(Read))


def clicks_written(app) -> None:  # type: ignore[no-untyped-def]
    """Write the clicks the app's tracked redirects buffered (its writer thread would,
    within CLICK_FLUSH_SECONDS): what a test checks next must not depend on timing."""
    app.extensions["click_log"].flush()
