"""The monthly free-story meter: the one place that decides who may read what.

- Trial and paid readers read everything (`newsletter.billing.entitlement.plan_of`).
- A free reader may open `FREE_STORIES_PER_MONTH` distinct stories per calendar month in
  their own time zone; re-opening a story already read this month is free.
- A read is charged only by `charge_read`, which the story page's script calls once the
  page is really shown in a browser. Nothing else charges: not the tracked redirect, not
  a HEAD, not a page load whose script never runs (scanners).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import bindparam, case, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from newsletter.billing.entitlement import Plan, plan_of
from newsletter.db import utcnow
from newsletter.readers.models import Reader
from newsletter.stories.models import Story
from newsletter.tracking.models import Read


class Access(StrEnum):
    UNLIMITED = "unlimited"  # trial or paid
    ALREADY_READ = "already_read"  # read this month: free to open again
    FREE_STORY = "free_story"  # shown in full; charged when the browser confirms
    PAYWALL = "paywall"  # no free stories left this month
    ANONYMOUS = "anonymous"  # no reader known: overview and a signup call to action


@dataclass(frozen=True)
class AccessDecision:
    access: Access
    free_left: int
    free_per_month: int

    @property
    def full_story(self) -> bool:
        return self.access in (Access.UNLIMITED, Access.ALREADY_READ, Access.FREE_STORY)


@dataclass(frozen=True)
class ChargeResult:
    charged: bool  # a free story was used up by this call
    allowed: bool  # the reader may read the story (False: the paywall applies)
    free_left: int


def free_per_month() -> int:
    return int(current_app.config["FREE_STORIES_PER_MONTH"])


def month_key(reader: Reader, now: datetime) -> str:
    """The calendar month in the reader's own time zone: '2026-11'."""
    return now.astimezone(ZoneInfo(reader.timezone)).strftime("%Y-%m")


def reads_this_month(session: Session, reader_id: int, month: str) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Read)
            .where(Read.reader_id == reader_id, Read.month == month, Read.metered.is_(True))
        )
        or 0
    )


def free_stories_left(session: Session, reader: Reader, now: datetime | None = None) -> int:
    used = reads_this_month(session, reader.id, month_key(reader, now or utcnow()))
    return max(0, free_per_month() - used)


def free_left_for(session: Session, readers: list[Reader], now: datetime) -> dict[int, int]:
    """Free stories left for many readers in one query (the send loop's per-batch need)."""
    if not readers:
        return {}
    months = {r.id: month_key(r, now) for r in readers}
    rows = session.execute(
        select(Read.reader_id, Read.month, func.count())
        .where(
            Read.reader_id.in_(months), Read.month.in_(set(months.values())), Read.metered.is_(True)
        )
        .group_by(Read.reader_id, Read.month)
    )
    used = {rid: n for rid, month, n in rows if months[rid] == month}
    limit = free_per_month()
    return {rid: max(0, limit - used.get(rid, 0)) for rid in months}


# Built once, with bound parameters: the read confirmation's hot path runs them all.
_MONTH_READS = select(
    func.coalesce(func.sum(case((Read.metered.is_(True), 1), else_=0)), 0),
    func.coalesce(func.max(case((Read.story_id == bindparam("story_id"), 1), else_=0)), 0),
).where(Read.reader_id == bindparam("reader_id"), Read.month == bindparam("month"))


def _month_reads(session: Session, reader_id: int, story_id: int, month: str) -> tuple[int, bool]:
    """(metered reads this month, whether this story is among this month's reads), in one
    query: both come from the same (reader, month) rows."""
    params = {"reader_id": reader_id, "story_id": story_id, "month": month}
    used, already = session.execute(_MONTH_READS, params).one()
    return int(used), bool(already)


def access_for(
    session: Session, reader: Reader | None, story: Story, now: datetime | None = None
) -> AccessDecision:
    limit = free_per_month()
    if reader is None:
        return AccessDecision(Access.ANONYMOUS, 0, limit)
    now = now or utcnow()
    if plan_of(reader, now) in (Plan.TRIAL, Plan.PAID):
        return AccessDecision(Access.UNLIMITED, limit, limit)
    used, already = _month_reads(session, reader.id, story.id, month_key(reader, now))
    left = max(0, limit - used)
    if already:
        return AccessDecision(Access.ALREADY_READ, left, limit)
    return AccessDecision(Access.FREE_STORY if left > 0 else Access.PAYWALL, left, limit)


_READ_KEY = ["reader_id", "story_id", "month"]
_INSERT_READ = {
    "postgresql": postgresql.insert(Read.__table__).on_conflict_do_nothing(
        index_elements=_READ_KEY
    ),
    "sqlite": sqlite.insert(Read.__table__).on_conflict_do_nothing(index_elements=_READ_KEY),
}


def _insert_read(session: Session, **values: object) -> None:
    session.execute(_INSERT_READ[session.get_bind().dialect.name], values)


# The row lock an UPDATE that changes no key takes, without writing a new row version;
# like that UPDATE, it does not block the inserts whose foreign keys point at the reader.
_readers = Reader.__table__
_LOCK_READER_PG = (
    select(_readers.c.id)
    .where(_readers.c.id == bindparam("reader_id"))
    .with_for_update(key_share=True)
)
# SQLite has no row locks: a write takes the database's write lock.
_LOCK_READER_SQLITE = (
    update(_readers).where(_readers.c.id == bindparam("reader_id")).values(id=_readers.c.id)
)


def _lock_reader(session: Session, reader_id: int) -> None:
    """Serialize the reader's charges: held until the transaction ends."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(_LOCK_READER_PG, {"reader_id": reader_id})
    else:
        session.execute(_LOCK_READER_SQLITE, {"reader_id": reader_id})


def charge_read(
    session: Session,
    reader: Reader,
    story_id: int,
    *,
    edition_id: int | None = None,
    now: datetime | None = None,
) -> ChargeResult:
    """Record that the reader read the story, using up a free story when it is a new one.

    Concurrency: the reader's row is locked first (FOR NO KEY UPDATE on PostgreSQL; an
    UPDATE, which takes the write lock, on SQLite), so simultaneous confirmations for
    different stories are counted one after another and never exceed the limit. The
    counting comes after the lock, in statements of their own, so on PostgreSQL they see
    what the previous holder committed. On SQLite, call it at the start of a transaction:
    a transaction that has already read cannot take the write lock once another writer
    has committed.
    """
    now = now or utcnow()
    limit = free_per_month()
    month = month_key(reader, now)
    _lock_reader(session, reader.id)
    unlimited = plan_of(reader, now) in (Plan.TRIAL, Plan.PAID)
    used, already = _month_reads(session, reader.id, story_id, month)
    if already:
        return ChargeResult(charged=False, allowed=True, free_left=max(0, limit - used))
    if not unlimited and used >= limit:
        return ChargeResult(charged=False, allowed=False, free_left=0)
    _insert_read(
        session,
        reader_id=reader.id,
        story_id=story_id,
        month=month,
        metered=not unlimited,
        edition_id=edition_id,
        at=now,
    )
    if unlimited:
        return ChargeResult(charged=False, allowed=True, free_left=limit)
    return ChargeResult(charged=True, allowed=True, free_left=max(0, limit - used - 1))
