"""Click logging and funnel events."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import bindparam, func, insert, select, true
from sqlalchemy.orm import Session

from newsletter.db import utcnow
from newsletter.delivery.models import Delivery
from newsletter.editions.models import Edition, EditionStory
from newsletter.readers.models import Reader
from newsletter.stories.models import Story
from newsletter.tokens import LinkClaims
from newsletter.tracking.bots import truncate_ip, verdict
from newsletter.tracking.models import Click, Event, EventKind

# The hot paths (every tracked redirect, every read confirmation) run statements built
# once here, with bound parameters: building a statement per request costs more CPU than
# the database takes to answer it, and a reused statement's cache key is memoized.

# A column added to the transaction's first query on PostgreSQL: the same as
# `SET LOCAL synchronous_commit = off`, without a round trip of its own. The transaction's
# COMMIT then returns without waiting for its WAL to reach the disk. For clicks and read
# charges only: the wait is a disk flush (about 3.5 ms on this project's machines, more
# than all the rest of a tracked redirect); what it buys is that the row survives a crash
# of the database server or the machine in the ~0.6 s after its commit. Losing such a
# click loses one analytics row; losing such a read gives the reader that story back (it
# is charged again when reopened). Visibility and locks are unchanged (other transactions
# see the row at commit, as usual), so the meter's concurrency guarantee holds; and the
# setting ends with the transaction, so nothing else (sign-up, billing, delivery) is
# affected.
_NO_FLUSH_WAIT = func.set_config("synchronous_commit", "off", true()).label("no_flush_wait")


def _on_postgresql(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


_stories, _edition_stories = Story.__table__, EditionStory.__table__
_readers, _deliveries = Reader.__table__, Delivery.__table__

# What a tracked link leads to, in one round trip: an edition_stories row implies its
# edition (the foreign key cascades), the join checks the reader, and the delivery time
# that the bot verdict needs comes along.
_LINK_TARGET = (
    select(_stories.c.slug, _deliveries.c.sent_at)
    .select_from(_edition_stories)
    .join(_stories, _stories.c.id == _edition_stories.c.story_id)
    .join(_readers, _readers.c.id == bindparam("reader_id"))
    .outerjoin(
        _deliveries,
        (_deliveries.c.edition_id == _edition_stories.c.edition_id)
        & (_deliveries.c.reader_id == bindparam("reader_id")),
    )
    .where(
        _edition_stories.c.edition_id == bindparam("edition_id"),
        _edition_stories.c.story_id == bindparam("story_id"),
    )
)
_LINK_TARGET_PG = _LINK_TARGET.add_columns(_NO_FLUSH_WAIT)
# A plain INSERT: nothing reads the row back, so no ORM object and no RETURNING.
_INSERT_CLICK = insert(Click.__table__)


@dataclass(frozen=True)
class LinkTarget:
    """What a valid tracked link leads to: the ids it names, the story's slug, and when the
    edition was delivered to the reader (None if there is no delivery record)."""

    reader_id: int
    edition_id: int
    story_id: int
    slug: str
    sent_at: datetime | None


def resolve_link(session: Session, claims: LinkClaims) -> LinkTarget | None:
    """The target of a valid token, if the reader exists and the story is in that edition.
    On PostgreSQL, the click logged next commits without waiting for the disk (see
    `_NO_FLUSH_WAIT`)."""
    row = session.execute(
        _LINK_TARGET_PG if _on_postgresql(session) else _LINK_TARGET,
        {
            "reader_id": claims.reader_id,
            "edition_id": claims.edition_id,
            "story_id": claims.story_id,
        },
    ).first()
    if row is None:
        return None
    return LinkTarget(claims.reader_id, claims.edition_id, claims.story_id, row.slug, row.sent_at)


def log_click(
    session: Session,
    target: LinkTarget,
    *,
    method: str,
    user_agent: str | None,
    ip: str | None,
    now: datetime | None = None,
) -> None:
    now = now or utcnow()
    sent_at = target.sent_at
    since = int((now - sent_at).total_seconds()) if sent_at else None
    judged = verdict(method, user_agent, since)
    session.execute(
        _INSERT_CLICK,
        {
            "reader_id": target.reader_id,
            "edition_id": target.edition_id,
            "story_id": target.story_id,
            "at": now,
            "seconds_since_delivery": since,
            "method": method.upper()[:10],
            "user_agent": (user_agent or "")[:512] or None,
            "ip_prefix": truncate_ip(ip),
            "bot": judged.bot,
            "bot_reason": judged.reason,
        },
    )


# The reader a read confirmation names, the story with its slug and the edition it names
# (if that edition still exists), in one round trip; the reader as an entity, since the
# meter and the entitlement take one.
_CONFIRMATION_TARGET = select(
    Reader,
    select(Story.id).where(Story.slug == bindparam("slug")).scalar_subquery().label("story_id"),
    select(Edition.id)
    .where(Edition.id == bindparam("edition_id"))
    .scalar_subquery()
    .label("edition_id"),
).where(Reader.id == bindparam("reader_id"))
_CONFIRMATION_TARGET_PG = _CONFIRMATION_TARGET.add_columns(_NO_FLUSH_WAIT)


@dataclass(frozen=True)
class ConfirmationTarget:
    reader: Reader
    story_id: int | None  # None: no story has that slug
    edition_id: int | None  # None: none named, or that edition is gone


def confirmation_target(
    session: Session, reader_id: object, slug: str, edition_id: object
) -> ConfirmationTarget | None:
    """What a read confirmation names; None if there is no such reader. On PostgreSQL, the
    charge that follows commits without waiting for the disk (see `_NO_FLUSH_WAIT`)."""
    if not isinstance(reader_id, int):
        return None
    row = session.execute(
        _CONFIRMATION_TARGET_PG if _on_postgresql(session) else _CONFIRMATION_TARGET,
        {
            "reader_id": reader_id,
            "slug": slug,
            "edition_id": edition_id if isinstance(edition_id, int) else None,
        },
    ).first()
    if row is None:
        return None
    return ConfirmationTarget(row[0], row.story_id, row.edition_id)


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
