"""Tracked links (their targets, the clicks they log) and funnel events."""

from __future__ import annotations

import time
from collections.abc import Callable

from sqlalchemy import bindparam, insert, select
from sqlalchemy.orm import Session

from newsletter import metrics
from newsletter.db import driver_connection, is_postgres, table_of, utcnow
from newsletter.delivery.models import Delivery
from newsletter.editions.models import EditionStory
from newsletter.readers.models import Reader
from newsletter.stories.models import Story
from newsletter.tokens import LinkClaims
from newsletter.tracking.bots import truncate_ip, verdict
from newsletter.tracking.clicklog import PendingClick
from newsletter.tracking.models import Click, Event, EventKind

# Statements are built once here, with bound parameters: building one per request costs
# more CPU than the database takes to answer it.


_stories, _edition_stories = table_of(Story), table_of(EditionStory)
_readers, _deliveries = table_of(Reader), table_of(Delivery)

# The story a tracked link leads to: an edition_stories row implies its edition (the
# foreign key cascades).
_LINK_SLUG = (
    select(_stories.c.slug)
    .select_from(_edition_stories)
    .join(_stories, _stories.c.id == _edition_stories.c.story_id)
    .where(
        _edition_stories.c.edition_id == bindparam("edition_id"),
        _edition_stories.c.story_id == bindparam("story_id"),
    )
)


class LinkTargets:
    """(edition, story) → the story's slug, remembered by this process.

    An edition's stories are frozen when it is assembled and a story's slug never
    changes, so a target once found stays right; the TTL only lets a deleted story or
    edition turn into a 404 again. Only found targets are kept: a token naming a story
    outside its edition is looked up (and refused) every time.
    """

    def __init__(self, ttl_seconds: float = 300.0, max_entries: int = 20_000) -> None:
        self.ttl_seconds = ttl_seconds
        self.max_entries = max_entries
        self._slugs: dict[tuple[int, int], tuple[str, float]] = {}

    def slug(self, session_for: Callable[[], Session], claims: LinkClaims) -> str | None:
        key = (claims.edition_id, claims.story_id)
        now = time.monotonic()
        found = self._slugs.get(key)
        if found is not None and found[1] > now:
            return found[0]
        slug = session_for().scalar(
            _LINK_SLUG, {"edition_id": claims.edition_id, "story_id": claims.story_id}
        )
        if slug is not None:
            if len(self._slugs) >= self.max_entries:
                self._slugs.clear()  # rare (a year of editions); refilled on demand
            self._slugs[key] = (slug, now + self.ttl_seconds)
        return slug


def pending_click(
    claims: LinkClaims, *, method: str, user_agent: str | None, ip: str | None
) -> PendingClick:
    """What the redirect knows of a click, cut to the columns' sizes; the IP truncated at
    once, so a full address is never kept, not even in memory."""
    return PendingClick(
        reader_id=claims.reader_id,
        edition_id=claims.edition_id,
        story_id=claims.story_id,
        at=utcnow(),
        method=method.upper()[:10],
        user_agent=(user_agent or "")[:512] or None,
        ip=truncate_ip(ip),
    )


# What a batch of clicks names: the readers that still exist, and when each of the
# batch's editions reached them (each an index lookup, however long the tables get).
_CLICK_READERS = select(_readers.c.id).where(
    _readers.c.id.in_(bindparam("reader_ids", expanding=True))
)
_CLICK_DELIVERIES = select(
    _deliveries.c.reader_id, _deliveries.c.edition_id, _deliveries.c.sent_at
).where(
    _deliveries.c.reader_id.in_(bindparam("reader_ids", expanding=True)),
    _deliveries.c.edition_id.in_(bindparam("edition_ids", expanding=True)),
    _deliveries.c.sent_at.is_not(None),
)
_CLICK_LINKS = select(_edition_stories.c.edition_id, _edition_stories.c.story_id).where(
    _edition_stories.c.edition_id.in_(bindparam("edition_ids", expanding=True))
)
_CLICK_COLUMNS = (
    "reader_id", "edition_id", "story_id", "at", "seconds_since_delivery", "method",
    "user_agent", "ip_prefix", "bot", "bot_reason",
)  # fmt: skip
_COPY_CLICKS = f"COPY clicks ({', '.join(_CLICK_COLUMNS)}) FROM STDIN"
_INSERT_CLICK = insert(table_of(Click))


def write_clicks(session: Session, clicks: list[PendingClick]) -> int:
    """Store a batch of clicks (the click log's writer); the number stored.

    Three queries for the whole batch find what the clicks name: the readers that still
    exist, when each edition reached them (the bot verdict needs it: "opened 3 s after
    delivery"), and the stories of the editions named. A click whose reader, edition or
    story is gone is dropped, as the foreign keys' cascades would have dropped it. On
    PostgreSQL the rows go in with COPY: the cheapest way in, for the server too.
    """
    ids = {
        "reader_ids": sorted({c.reader_id for c in clicks}),
        "edition_ids": sorted({c.edition_id for c in clicks}),
    }
    known_readers = set(session.scalars(_CLICK_READERS, ids))
    sent_at = {(r, e): at for r, e, at in session.execute(_CLICK_DELIVERIES, ids)}
    known_links = {(e, s) for e, s in session.execute(_CLICK_LINKS, ids)}
    rows = []
    for n, click in enumerate(clicks, start=1):
        if n % 64 == 0:
            # The writer shares its process with the request thread: let a request that
            # is waiting for the interpreter run now, not after the whole batch.
            time.sleep(0)
        if click.reader_id not in known_readers:
            continue
        if (click.edition_id, click.story_id) not in known_links:
            continue
        delivered = sent_at.get((click.reader_id, click.edition_id))
        since = int((click.at - delivered).total_seconds()) if delivered else None
        judged = verdict(click.method, click.user_agent, since)
        rows.append(
            (
                click.reader_id,
                click.edition_id,
                click.story_id,
                click.at,
                since,
                click.method,
                click.user_agent,
                click.ip,
                judged.bot,
                judged.reason,
            )  # fmt: skip
        )
    if not rows:
        return 0
    if is_postgres(session):
        dbapi = driver_connection(session)
        with dbapi.cursor() as cursor, cursor.copy(_COPY_CLICKS) as copy:  # type: ignore[union-attr]
            for row in rows:
                copy.write_row(row)
    else:
        session.execute(
            _INSERT_CLICK, [dict(zip(_CLICK_COLUMNS, row, strict=True)) for row in rows]
        )
    return len(rows)


def record_paywall_impression(
    session: Session, reader: Reader, story: Story, edition_id: int | None
) -> None:
    session.add(
        Event(
            kind=EventKind.PAYWALL_IMPRESSION,
            reader_id=reader.id,
            story_id=story.id,
            edition_id=edition_id,
        )
    )
    session.flush()
    metrics.PAYWALL_IMPRESSIONS.inc()
