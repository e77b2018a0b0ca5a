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
from datetime import date, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy import (
    Connection,
    Executable,
    Integer,
    String,
    bindparam,
    case,
    func,
    literal,
    null,
    select,
)
from sqlalchemy.orm import Session

from newsletter.billing.entitlement import Plan, certainly_free, plan_of
from newsletter.db import (
    NO_FLUSH_WAIT,
    POSTGRESQL,
    SQLITE,
    DriverStatement,
    UTCDateTime,
    table_of,
    upsert,
    utcnow,
)
from newsletter.editions.models import Edition
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
    month: str | None = None  # the reader's month, when the meter was asked ("2026-11")

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


def month_key(timezone: str, now: datetime) -> str:
    """The calendar month in the reader's own time zone: '2026-11'."""
    return now.astimezone(ZoneInfo(timezone)).strftime("%Y-%m")


def next_reset(timezone: str, now: datetime) -> date:
    """The day free stories start again: the 1st of the next month in the reader's zone."""
    local = now.astimezone(ZoneInfo(timezone))
    return date(local.year + local.month // 12, local.month % 12 + 1, 1)


def month_number(month: str) -> int:
    """'2026-11' as 202611, for a compact token."""
    return int(month.replace("-", ""))


def month_of_number(number: int) -> str:
    """202611 as '2026-11'."""
    return f"{number // 100:04d}-{number % 100:02d}"


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
    used = reads_this_month(session, reader.id, month_key(reader.timezone, now or utcnow()))
    return max(0, free_per_month() - used)


def free_left_for(session: Session, readers: list[Reader], now: datetime) -> dict[int, int]:
    """Free stories left for many readers in one query (the send loop's per-batch need)."""
    if not readers:
        return {}
    months = {r.id: month_key(r.timezone, now) for r in readers}
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


def _month_reads(
    connection: Connection, reader_id: int, story_id: int, month: str
) -> tuple[int, bool]:
    """(metered reads this month, whether this story is among this month's reads), in one
    query: both come from the same (reader, month) rows."""
    params = {"reader_id": reader_id, "story_id": story_id, "month": month}
    used, already = connection.execute(_MONTH_READS, params).one()
    return int(used), bool(already)


def access_for(
    session: Session, reader: Reader | None, story: Story, now: datetime | None = None
) -> AccessDecision:
    limit = free_per_month()
    if reader is None:
        return AccessDecision(Access.ANONYMOUS, 0, limit)
    now = now or utcnow()
    if plan_of(session, reader.id, now) in (Plan.TRIAL, Plan.PAID):
        return AccessDecision(Access.UNLIMITED, limit, limit)
    month = month_key(reader.timezone, now)
    used, already = _month_reads(session.connection(), reader.id, story.id, month)
    left = max(0, limit - used)
    if already:
        return AccessDecision(Access.ALREADY_READ, left, limit, month)
    return AccessDecision(Access.FREE_STORY if left > 0 else Access.PAYWALL, left, limit, month)


_reads, _readers, _stories, _editions = (
    table_of(Read), table_of(Reader), table_of(Story), table_of(Edition)
)  # fmt: skip
_STORY_MATCHES = (
    select(_stories.c.id)
    .where(_stories.c.id == bindparam("story_id"), _stories.c.slug == bindparam("slug"))
    .exists()
)
_READER_EXISTS = select(_readers.c.id).where(_readers.c.id == bindparam("reader_id")).exists()
# Why a charge inserted nothing, in one round trip: whether the reader exists (a row or
# none) and the story the page's slug names.
_CHARGE_FACTS = select(
    select(_stories.c.id)
    .where(_stories.c.slug == bindparam("slug"))
    .scalar_subquery()
    .label("story_id"),
).where(_readers.c.id == bindparam("reader_id"))


class _Charge(StrEnum):
    FIRST = "first"  # metered, if the entitlement rule certainly says free
    METERED = "metered"  # the entitlement rule said free
    UNMETERED = "unmetered"  # the entitlement rule said trial or paid


def _charge_statement(dialect: str, kind: _Charge) -> Executable:
    """One INSERT that charges a read, atomic on its own: no lock, no transaction around.

    Metered: the read takes slot (metered reads this month + 1), only while that count is
    under the limit and the story is not read yet this month. Two charges that counted
    the same reads pick the same slot, and the unique (reader, month, slot) lets only
    one of them in (the other waits for it to commit, then inserts nothing): that is what
    keeps simultaneous confirmations from exceeding the limit. Unmetered (trial and paid
    readers): the read is only recorded. Every kind checks that the reader exists and the
    slug is the story's, and names the edition only if it still exists. It returns the
    slot of a row that went in, nothing when none did. On PostgreSQL its commit does not
    wait for the disk (`NO_FLUSH_WAIT`).
    """
    metered = kind != _Charge.UNMETERED
    this_month = (_reads.c.reader_id == bindparam("reader_id")) & (
        _reads.c.month == bindparam("month")
    )
    # Counted once, in a derived table the row is selected from.
    month_reads = (
        select(func.count().label("used"))
        .select_from(_reads)
        .where(this_month, _reads.c.metered.is_(True))
        .subquery("month_reads")
    )
    used = month_reads.c.used
    edition = select(_editions.c.id).where(_editions.c.id == bindparam("edition_id"))
    row = (
        select(
            bindparam("reader_id", type_=Integer),
            bindparam("story_id", type_=Integer),
            bindparam("month", type_=String),
            literal(metered),
            (used + 1) if metered else null(),
            edition.scalar_subquery(),
            bindparam("at", type_=UTCDateTime()),
        )
        .select_from(month_reads)
        .where(_READER_EXISTS, _STORY_MATCHES)
    )
    if metered:
        row = row.where(used < bindparam("limit"))
    if kind == _Charge.FIRST:
        row = row.where(certainly_free(bindparam("reader_id", type_=Integer)))
    if dialect == POSTGRESQL:
        row = row.where(NO_FLUSH_WAIT == "off")
    columns = ["reader_id", "story_id", "month", "metered", "slot", "edition_id", "at"]
    insert = upsert(_reads, dialect).from_select(columns, row)
    return insert.on_conflict_do_nothing().returning(_reads.c.slot)


_CHARGE = {
    (dialect, kind): _charge_statement(dialect, kind)
    for dialect in (POSTGRESQL, SQLITE)
    for kind in _Charge
}
# The charge nearly every confirmation is, straight on the driver on PostgreSQL.
_FIRST_CHARGE_PG = DriverStatement(_CHARGE[(POSTGRESQL, _Charge.FIRST)])


def charge_read(
    connection: Connection,
    reader_id: int,
    slug: str,
    story_id: int,
    *,
    month: str,
    edition_id: int | None = None,
    now: datetime | None = None,
) -> ChargeResult | None:
    """Record that the reader read the story in `month`, using up a free story when it is
    a new one. None when there is no such reader or `slug` is not that story's (the
    caller's 400).

    `month` is the one the story page was shown in (its view token carries it): the page
    decided to show the story in full against that month's free stories, so that month
    pays for it, even when the reader's clock passes midnight of the 1st before the page
    confirms.

    Every statement is atomic on its own (see `_charge_statement`), so on PostgreSQL run
    it on an autocommit connection (`Database.autocommit`). A free reader's first read of
    a story is ONE statement. Only a charge that inserted nothing asks why: the reader has
    a subscription (the entitlement rule decides), the story was read already, no free
    story is left, or another read took the slot first (try again: each loss means a
    slot was taken, so it ends within FREE_STORIES_PER_MONTH tries).
    """
    now = now or utcnow()
    limit = free_per_month()
    params = {
        "reader_id": reader_id, "slug": slug, "story_id": story_id, "month": month,
        "edition_id": edition_id, "at": now, "limit": limit,
    }  # fmt: skip
    dialect = connection.dialect.name
    kind = _Charge.FIRST
    for _ in range(limit + 2):
        if kind == _Charge.FIRST and dialect == POSTGRESQL:
            slot = _FIRST_CHARGE_PG.scalar(connection, params)
        else:
            slot = connection.execute(_CHARGE[(dialect, kind)], params).scalar()
        if slot is not None:
            return ChargeResult(charged=True, allowed=True, free_left=max(0, limit - slot))
        facts = connection.execute(_CHARGE_FACTS, params).first()
        if facts is None or facts.story_id != story_id:
            return None
        if plan_of(connection, reader_id, now) in (Plan.TRIAL, Plan.PAID):
            connection.execute(_CHARGE[(dialect, _Charge.UNMETERED)], params)
            return ChargeResult(charged=False, allowed=True, free_left=limit)
        used, already = _month_reads(connection, reader_id, story_id, month)
        if already:
            return ChargeResult(charged=False, allowed=True, free_left=max(0, limit - used))
        if used >= limit:
            return ChargeResult(charged=False, allowed=False, free_left=0)
        kind = _Charge.METERED  # a slot taken meanwhile, or a subscription giving no plan
    raise RuntimeError("the meter could not place a read")  # unreachable: see above
