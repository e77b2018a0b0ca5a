"""Delivery use cases: the one way to send an edition, whoever asks (CLI or worker).

These are boundaries, like a request or a job: each commits the ledger rows it makes
before any mail goes out (so a crash mid-send finds them), then runs the send loop,
which owns its own transactions. Call them inside an app context.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime
from typing import TypeVar

from flask import Flask
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.db import Database, committed, utcnow
from newsletter.delivery.ledger import (
    DueDate,
    deliveries,
    edition_for,
    enqueue_due,
    enqueue_now,
    pending,
)
from newsletter.delivery.progress import SendProgress, SendReport
from newsletter.delivery.schedule import dates_starting_soon
from newsletter.delivery.sender import send_queued
from newsletter.editions.assembly import NoStories, assemble
from newsletter.editions.models import Edition, EditionStatus
from newsletter.errors import NewsletterError
from newsletter.text import plural

log = logging.getLogger(__name__)
T = TypeVar("T")


def _committed(db: Database, work: Callable[[Session], T]) -> T:
    """Run `work` in a writing unit of work of its own, run again when it collided with
    another process: two assembling the same date at once (the loser's unique violation
    finds the winner's edition), or a serialization failure or deadlock."""
    return committed(db, work, also=(IntegrityError,))


# Past this many new rows, PostgreSQL's statistics are refreshed before sending.
ANALYZE_AFTER = 1000


def _refresh_statistics(db: Database, queued: int) -> None:
    """Fresh statistics after a big enqueue. Autovacuum analyzes the table only after its
    next nap; until then the planner may think `deliveries` or `readers` tiny and choose
    scans that slow every per-message ledger write down."""
    if db.is_postgres and queued >= ANALYZE_AFTER:
        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE deliveries, readers"))


@dataclass(frozen=True)
class PausedEdition:
    """An edition staff paused (`editions.paused`): senders claim none of its rows."""

    day: date
    edition_id: int
    waiting: int  # its readers still to send to

    def explain(self, base_url: str) -> str:
        return (
            f"the edition of {self.day.isoformat()} is paused ({plural(self.waiting, 'reader')} "
            f"waiting); resume it with Resume sending at {base_url}/admin/editions/"
            f"{self.edition_id}, then run this again"
        )


class EditionPaused(NewsletterError):
    """`send_now` on a paused edition (`report` is None: nothing was queued or sent), or
    one paused while it was sending (`report`: what went before the pause)."""

    def __init__(self, paused: PausedEdition, base_url: str, report: SendReport | None) -> None:
        super().__init__(paused.explain(base_url))
        self.paused = paused
        self.report = report


@dataclass(frozen=True)
class UncomposedEdition:
    """An edition whose messages cannot be built (`editions.compose_error`): senders
    leave its rows queued until a rendering that works clears it."""

    day: date
    edition_id: int
    waiting: int  # its readers still to send to
    cause: str

    def explain(self, base_url: str) -> str:
        return (
            f"the edition of {self.day.isoformat()} cannot be composed: {self.cause}. "
            f"{plural(self.waiting, 'reader')} {'is' if self.waiting == 1 else 'are'} waiting "
            "and nothing was sent to them; fix it at "
            f"{base_url}/admin/editions/{self.edition_id} (drop the story, or roll the "
            "template back) and the send resumes: run this again"
        )


class EditionNotComposed(NewsletterError):
    """`send_now` on an edition that cannot be composed: its readers were queued and wait;
    `report` is what the run sent meanwhile (other editions' retries)."""

    def __init__(self, held: UncomposedEdition, base_url: str, report: SendReport) -> None:
        super().__init__(held.explain(base_url))
        self.held = held
        self.report = report


def uncomposed_editions(app: Flask) -> list[UncomposedEdition]:
    """Editions that cannot be composed, with the readers they hold back."""
    db: Database = app.extensions["db"]
    with db.session() as session:
        found = session.execute(
            select(Edition.id, Edition.date, Edition.compose_error)
            .where(Edition.compose_error.is_not(None))
            .order_by(Edition.date)
        ).all()
        return [
            UncomposedEdition(day, eid, _waiting(session, eid), cause or "")
            for eid, day, cause in found
        ]


def _waiting(session: Session, edition_id: int) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(deliveries)
            .where(deliveries.c.edition_id == edition_id, pending())
        )
        or 0
    )


def paused_editions(app: Flask) -> list[PausedEdition]:
    """Editions being sent that staff paused, with the readers they hold back."""
    db: Database = app.extensions["db"]
    with db.session() as session:
        found = session.execute(
            select(Edition.id, Edition.date)
            .where(Edition.paused, Edition.status == EditionStatus.SENDING)
            .order_by(Edition.date)
        ).all()
        return [PausedEdition(day, eid, _waiting(session, eid)) for eid, day in found]


@dataclass
class NowRun:
    day: date
    edition_id: int
    queued: int  # readers added to the edition's audience by this run
    report: SendReport


def send_now(
    app: Flask,
    day: date,
    *,
    progress: Callable[[SendProgress], None] | None = None,
    wait: bool = True,
) -> NowRun:
    """Send the edition of `day` to every confirmed reader who has not had it (assembled
    first if needed; raises `NoStories`). Safe to re-run: only what is left is sent.

    Raises `EditionPaused` when staff paused the edition: before anything is queued when
    it already was, or once the run stops when the pause came while it was sending.
    Raises `EditionNotComposed` when its messages cannot be built: the readers are
    queued and wait for the fix.
    """
    db: Database = app.extensions["db"]
    base_url = app.config["BASE_URL"]

    def work(session: Session) -> tuple[int, int]:
        edition = edition_for(session, day)
        if edition.paused:
            paused = PausedEdition(day, edition.id, _waiting(session, edition.id))
            raise EditionPaused(paused, base_url, None)
        return edition.id, enqueue_now(session, edition)

    edition_id, queued = _committed(db, work)
    _refresh_statistics(db, queued)
    report = send_queued(app, edition_id, progress=progress, wait=wait)
    with db.session() as session:
        paused, cause = session.execute(
            select(Edition.paused, Edition.compose_error).where(Edition.id == edition_id)
        ).one()
        waiting = _waiting(session, edition_id) if paused or cause else 0
    if cause is not None and waiting:
        held = UncomposedEdition(day, edition_id, waiting, cause)
        raise EditionNotComposed(held, base_url, report)
    if paused and waiting:
        raise EditionPaused(PausedEdition(day, edition_id, waiting), base_url, report)
    return NowRun(day, edition_id, queued, report)


@dataclass
class DueRun:
    dates: list[DueDate] = field(default_factory=list)
    report: SendReport = field(default_factory=SendReport)

    @property
    def no_stories(self) -> list[DueDate]:
        return [d for d in self.dates if d.no_stories]


def deliver_due(
    app: Flask,
    *,
    day: date | None = None,
    wait: bool = False,
    progress: Callable[[SendProgress], None] | None = None,
) -> DueRun:
    """Queue the readers whose local delivery time has come (see `enqueue_due`), then
    send everything queued. The worker runs this every minute."""
    db: Database = app.extensions["db"]
    dates = _committed(db, lambda session: enqueue_due(session, day=day))
    _refresh_statistics(db, sum(d.queued for d in dates))
    for due in dates:
        if due.no_stories:
            log.warning("%s: readers are due but %s", due.day, due.no_stories)
        elif due.queued:
            log.info("%s: queued %d readers", due.day, due.queued)
    report = send_queued(app, None, progress=progress, wait=wait)
    return DueRun(dates, report)


@dataclass(frozen=True)
class AheadResult:
    day: date
    outcome: str  # "assembled", "ready" (already there) or why there is none


def assemble_ahead(app: Flask, *, now: datetime | None = None) -> list[AheadResult]:
    """Make the edition of every local date that starts within two hours in some
    reader's zone, so it is ready (and can be looked at) before the first reader's hour.
    An edition that exists is left as it is. Should this miss one (downtime), delivery
    assembles it on demand."""
    db: Database = app.extensions["db"]
    now = now or utcnow()
    with db.session() as session:
        days = sorted(dates_starting_soon(session, now))
    results = []
    for day in days:
        try:
            with db.session() as session:  # one date's lack of stories rolls back only itself
                if session.scalar(select(Edition.id).where(Edition.date == day)) is not None:
                    results.append(AheadResult(day, "ready"))
                    continue
                assemble(session, day, now=now)
                results.append(AheadResult(day, "assembled"))
        except NoStories as exc:
            log.warning("%s", exc.message)
            results.append(AheadResult(day, exc.message))
        except IntegrityError:
            results.append(AheadResult(day, "ready"))  # another worker made it just now
    return results
