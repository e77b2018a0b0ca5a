"""The delivery ledger: who gets which edition, one row per (edition, reader).

Rows are made when a reader's turn comes (`enqueue_now`, `enqueue_due`) and never twice:
the unique constraint on (edition_id, reader_id) with ON CONFLICT DO NOTHING makes every
enqueue idempotent, so a re-run, a catch-up after downtime or two workers at once add
nothing already there. Services here only flush; the caller's boundary commits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import (
    ColumnElement,
    and_,
    exists,
    false,
    func,
    literal,
    literal_column,
    or_,
    select,
    true,
    update,
)
from sqlalchemy.orm import Session

from newsletter.billing.entitlement import Plan, plans_of
from newsletter.db import UTCDateTime, plan_each_run, rowcount, upsert, utcnow
from newsletter.delivery.models import Delivery, DeliveryState
from newsletter.delivery.schedule import due_on, local_slots, same_local_day
from newsletter.editions.assembly import NoStories, assemble
from newsletter.editions.models import Edition, EditionStatus
from newsletter.readers.models import Reader, ReaderStatus

# Readers handled per statement: bounded memory whatever the list size.
CHUNK = 2000
# Longer than any local day (25 hours on a fall-back day), to find today's deliveries.
LOCAL_DAY_REACH = timedelta(hours=27)

deliveries = Delivery.__table__
readers = Reader.__table__


def pending(table: Any = deliveries) -> ColumnElement[bool]:
    """Rows still to do (queued or sending), as literals so the partial index matches."""
    return table.c.state.in_([literal_column("'queued'"), literal_column("'sending'")])


def edition_for(session: Session, day: date, *, now: datetime | None = None) -> Edition:
    """The edition of `day`, assembled on demand. Raises `NoStories`."""
    edition = session.scalar(select(Edition).where(Edition.date == day))
    if edition is not None:
        return edition
    return assemble(session, day, now=now or utcnow()).edition


def plans_for(session: Session, reader_ids: Sequence[int], now: datetime) -> dict[int, Plan]:
    """Each reader's plan, which fixes the variant they get: billing's answer for the
    whole chunk in one query (ids only: no reader object is loaded to enqueue)."""
    return plans_of(session, reader_ids, now)


def _enqueue_chunks(
    session: Session,
    edition: Edition,
    audience: ColumnElement[bool],
    now: datetime,
    *,
    scheduled: bool = False,
) -> int:
    """Queue every confirmed reader matching `audience` who has no row for `edition` yet,
    among the readers that exist now (later signups wait for the next run).

    Readers are taken CHUNK ids at a time (an id range: a bounded read whatever plan the
    database picks): the range's ids are read with what the local-day rules need, those
    with a row dropped when the edition has rows already, and the plans computed by
    billing's rule for the chunk at once. Each plan's share is written by one
    INSERT ... SELECT ... ON CONFLICT DO NOTHING that re-checks `confirmed` in the same
    statement.

    One edition per reader per local day, whoever sends: a reader who already had an
    edition queued earlier on their local day is left out (see `_owed`); and a
    `scheduled` run leaves out readers whose delivery time on the edition's date came
    before they confirmed (their first edition is the next one).

    No anti-join inside a query on purpose: rows inserted earlier in this same transaction
    are invisible to the planner's statistics, and PostgreSQL then picks a nested loop
    that rescans the edition's rows once per reader.
    """
    plan_each_run(session)  # `deliveries` grows under the chunk reads
    insert = upsert(deliveries, session)
    newest = session.scalar(select(func.max(Reader.id))) or 0
    # A new edition (the usual --now case) has no rows to look for.
    had_rows = session.scalar(select(Delivery.id).where(Delivery.edition_id == edition.id).limit(1))
    # Each reader's latest row of another edition within a local day's reach, looked up
    # per reader through the reader_id index. As one IN list over the chunk, PostgreSQL
    # scanned the table, this edition's growing rows included: quadratic in the list size.
    other = Delivery.__table__.alias("other")
    latest_other = (
        select(func.max(other.c.queued_at))
        .where(
            other.c.reader_id == Reader.id,
            other.c.edition_id != edition.id,
            other.c.queued_at > now - LOCAL_DAY_REACH,
        )
        .scalar_subquery()
    )
    queued = 0
    for low in range(0, newest, CHUNK):
        found = session.execute(
            select(
                Reader.id, Reader.timezone, Reader.delivery_hour, Reader.confirmed_at, latest_other
            ).where(
                Reader.id > low,
                Reader.id <= low + CHUNK,
                Reader.status == ReaderStatus.CONFIRMED,
                audience,
            )
        ).all()
        ids = _owed(edition, found, now, scheduled=scheduled)
        if ids and had_rows is not None:
            done = set(
                session.scalars(
                    select(Delivery.reader_id).where(
                        Delivery.edition_id == edition.id, Delivery.reader_id.in_(ids)
                    )
                )
            )
            ids = [i for i in ids if i not in done]
        if not ids:
            continue
        by_plan: dict[Plan, list[int]] = defaultdict(list)
        for reader_id, plan in plans_for(session, ids, now).items():
            by_plan[plan].append(reader_id)
        for plan, plan_ids in by_plan.items():
            queued += _insert_rows(
                session, insert, edition.id, plan, readers.c.id.in_(plan_ids), now
            )
    if queued:
        start_sending(session, edition, now)
    session.flush()
    return queued


def _owed(edition: Edition, found: Sequence[Any], now: datetime, *, scheduled: bool) -> list[int]:
    """The ids among `found` (id, timezone, delivery_hour, confirmed_at, latest row of
    another edition) that may be queued `edition` now (see `_enqueue_chunks`). The latest
    other row decides: if it is not on today's local date, no earlier one is."""
    if scheduled:
        found = [r for r in found if due_on(r[1], r[2], r[3], edition.date)]
    return [r[0] for r in found if r[4] is None or not same_local_day(r[1], r[4], now)]


def _insert_rows(
    session: Session,
    insert: Any,
    edition_id: int,
    plan: Plan,
    which: ColumnElement[bool],
    now: datetime,
) -> int:
    rows = select(
        literal(edition_id),
        readers.c.id,
        literal(plan.value),
        literal(DeliveryState.QUEUED.value),
        literal(0),
        literal(now, UTCDateTime()),
        false(),
        literal(now, UTCDateTime()),
    ).where(which, readers.c.status == ReaderStatus.CONFIRMED.value)
    columns = [
        "edition_id",
        "reader_id",
        "plan",
        "state",
        "attempts",
        "next_attempt_at",
        "resent_after_crash",
        "queued_at",
    ]
    stmt = (
        insert.from_select(columns, rows)
        .on_conflict_do_nothing(index_elements=["edition_id", "reader_id"])
        .execution_options(preserve_rowcount=True)  # an INSERT's rowcount is opt-in
    )
    return max(rowcount(session.execute(stmt)) or 0, 0)


def start_sending(session: Session, edition: Edition, now: datetime) -> None:
    """The first queued row freezes the edition (re-assembly leaves it alone from now on).
    A later wave of readers for the same date reopens a finished one."""
    if edition.status != EditionStatus.SENDING:
        edition.status = EditionStatus.SENDING
        edition.send_started_at = edition.send_started_at or now
        edition.send_finished_at = None


def enqueue_now(session: Session, edition: Edition, *, now: datetime | None = None) -> int:
    """Queue every confirmed reader who has no row for `edition`: the audience of an
    immediate send, frozen now (readers who sign up while it runs are not added)."""
    return _enqueue_chunks(session, edition, true(), now or utcnow())


@dataclass
class DueDate:
    """What a scheduled run found for one local date."""

    day: date
    timezones: list[str] = field(default_factory=list)
    queued: int = 0
    edition_id: int | None = None
    no_stories: str | None = None  # why nothing was sent to the readers due on `day`


def _due_condition(slots: Iterable[tuple[str, int]]) -> ColumnElement[bool]:
    """Readers whose delivery hour has come: per time zone, delivery_hour <= local hour.
    Zones sharing an hour share one term (at most 24 terms, however many zones)."""
    by_hour: dict[int, list[str]] = defaultdict(list)
    for tz, hour in slots:
        by_hour[hour].append(tz)
    return or_(
        *(
            and_(Reader.timezone.in_(sorted(tzs)), Reader.delivery_hour <= hour)
            for hour, tzs in sorted(by_hour.items())
        )
    )


def _anyone_owed(session: Session, audience: ColumnElement[bool], day: date) -> bool:
    """Whether some confirmed reader in `audience` is owed the edition of `day`: no
    edition is assembled (and its stories taken) for readers who all confirmed after
    its delivery time. Stops at the first (nearly always the first row)."""
    rows = session.execute(
        select(Reader.timezone, Reader.delivery_hour, Reader.confirmed_at)
        .where(Reader.status == ReaderStatus.CONFIRMED, audience)
        .execution_options(yield_per=500)
    )
    try:
        return any(due_on(tz, hour, confirmed, day) for tz, hour, confirmed in rows)
    finally:
        rows.close()


def enqueue_due(
    session: Session, *, now: datetime | None = None, day: date | None = None
) -> list[DueDate]:
    """Queue the readers whose local delivery time has come on their local date.

    For each time zone of a confirmed reader, the local date D and hour h at `now`
    (zoneinfo, so DST is right); due = confirmed readers there with delivery_hour <= h and
    no row for the edition of D. "<=" rather than "==" is what makes it robust: on a
    spring-forward day a reader at 02:00 (a time that does not exist) is due at 03:00;
    on a fall-back day the repeated hour finds their row already there; after downtime
    every hour missed on the current local date is caught up, once. A date's edition is
    assembled on demand; with no stories nothing is queued for it (see `no_stories`).
    `day` limits the run to zones whose local date is `day`.
    """
    now = now or utcnow()
    found: list[DueDate] = []
    for local_day, slots in sorted(local_slots(session, now).items()):
        if day is not None and local_day != day:
            continue
        due = DueDate(local_day, timezones=sorted(tz for tz, _ in slots))
        found.append(due)
        audience = _due_condition(slots)
        edition = session.scalar(select(Edition).where(Edition.date == local_day))
        if edition is None:
            if not _anyone_owed(session, audience, local_day):
                continue  # nobody's hour yet: assemble_ahead (or a later run) makes it
            try:
                edition = edition_for(session, local_day, now=now)
            except NoStories as exc:
                due.no_stories = exc.message
                continue
        due.edition_id = edition.id
        due.queued = _enqueue_chunks(session, edition, audience, now, scheduled=True)
    return found


def finish_editions(session: Session, edition_ids: Iterable[int], now: datetime) -> None:
    """Editions with no row left to do become `sent`."""
    ids = list(edition_ids)
    if not ids:
        return
    left = exists().where(deliveries.c.edition_id == Edition.id, pending())
    session.execute(
        update(Edition)
        .where(Edition.id.in_(ids), Edition.status == EditionStatus.SENDING, ~left)
        .values(status=EditionStatus.SENT, send_finished_at=now)
        .execution_options(synchronize_session=False)
    )


def sending_editions(session: Session) -> list[int]:
    """Editions with rows to do, oldest date first (every pending row belongs to one)."""
    return list(
        session.scalars(
            select(Edition.id).where(Edition.status == EditionStatus.SENDING).order_by(Edition.date)
        )
    )
