"""The send loop: ledger rows in, SMTP out, every outcome written back to the ledger.

`send_queued` is a boundary, like a request or a job: it owns its transactions and
commits per message, because the ledger must say what happened to each message before
the next one goes (services elsewhere only flush). This module holds the threads, the
rate limit and the retry policy; the ledger's statements are `LedgerStore`'s
(`newsletter.delivery.store`) and the progress figures `newsletter.delivery.progress`'s.

How a send runs. `SEND_CONNECTIONS` threads, each with its own database connection and
its own reused SMTP connection, claim batches of due rows (`queued`, next attempt due,
no live lease) with one UPDATE ... WHERE id IN (SELECT ... ORDER BY id LIMIT n FOR UPDATE
SKIP LOCKED) RETURNING: `claimed_by` names the thread (hostname:pid:random:n) and
`lease_until` says until when the claim holds. On PostgreSQL SKIP LOCKED lets several
processes or machines share one send with no row claimed twice; SQLite serializes
writers, so the same statement without it is just as exclusive. For each message the row
becomes `sending` (committed) before the first byte goes to SMTP, then `sent` with its
Message-ID; that result is committed together with the next row's `sending` to halve the
commits. A shared token bucket holds all threads to `SEND_RATE_PER_SECOND`.

Outcomes. Temporary refusals (any 4xx, timeouts, dropped connections) put the row back
in the queue after a full-jitter exponential backoff (`SEND_RETRY_BASE_SECONDS` doubling
per attempt, capped at `SEND_RETRY_MAX_SECONDS`) until `SEND_MAX_ATTEMPTS`, then `failed`.
Permanent refusals (5xx) suppress the row with the reply and record a hard bounce through
`newsletter.deliverability.reports`, like any provider's or mailbox's report: the reader
is `bounced` and gets no more mail. A reader who is no longer confirmed when their row comes up is
suppressed with nothing sent. A relay that cannot be reached, refuses our login or our
sender address is not the reader's fault: the run stops (`SendAborted`) and the rows stay
queued, with no attempt counted.

An edition whose messages cannot be built (`CannotCompose`: a story or template it cannot
be rendered with, see `newsletter.editions.rendering`) is left out of the run: its rows
stay queued and unclaimed, the cause is recorded on the edition once (staff see it, the
log says it once, not every minute), and the other editions go on. Once a rendering that
works clears it, the next run sends its rows as any others. A single reader whose message
cannot be built (an address that cannot stand in a header) is `failed` with the reason.

Crash safety. Killed at any moment (kill -9) and run again, every reader ends with
exactly one copy of the edition, with one exception. A row is `sending` only while its
message may be on the wire: committed before the SMTP transaction starts, and replaced
by its outcome right after. Rows found `sending` whose lease has expired (their sender
is gone) are therefore the only ones whose fate is unknown: the server may or may not
have accepted the message. They are sent again with the same Message-ID (it is derived
from edition and reader), so a receiving system that de-duplicates on Message-ID drops
the twin, flagged `resent_after_crash` and counted in the run's report. We prefer a
possible duplicate to a possibly missed edition. Rows merely claimed but still `queued`
were never handed over, and are simply sent once their lease expires. A run that finds
rows leased by a sender that is still alive leaves them to it and, with `wait`, waits
until every row is final.

On PostgreSQL the ledger connections use `synchronous_commit = off`: a commit returns
before its WAL is flushed. A killed sender loses nothing by it (the server has the
commit); only a crash of the PostgreSQL server itself could lose the last few
milliseconds of ledger writes, which turns at worst a `sent` back into `sending`, and
that is the case the same-Message-ID resend above already covers.
"""

from __future__ import annotations

import logging
import random
import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from newsletter import metrics
from newsletter.db import Database, utcnow
from newsletter.deliverability.reports import BounceReport, ReportKind, record_report
from newsletter.delivery.ledger import finish_editions, sending_editions
from newsletter.delivery.models import DeliveryState
from newsletter.delivery.progress import SendProgress, SendReport, report_progress, status
from newsletter.delivery.store import Claimed, LedgerStore
from newsletter.editions.models import Edition, EditionStory
from newsletter.editions.personalize import (
    EditionMessages,
    Recipient,
    RecipientRow,
    recipient_values,
)
from newsletter.editions.rendering import CannotCompose, note_compose_error
from newsletter.errors import NewsletterError
from newsletter.locks import process_id
from newsletter.mail.message import now_header
from newsletter.mail.sending import open_transport, send_bytes
from newsletter.mail.transports import DeliveryError, PermanentDeliveryError, Transport
from newsletter.readers.models import ReaderStatus

log = logging.getLogger(__name__)


class SendAborted(NewsletterError):
    """The relay is unusable (unreachable, login or sender refused): nothing is lost,
    the rows stay queued for the next run."""

    def __init__(self, message: str, report: SendReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class SendSettings:
    connections: int = 4
    rate_per_second: float = 0.0
    batch_size: int = 200
    max_attempts: int = 5
    retry_base: float = 60.0
    retry_cap: float = 3600.0
    lease_seconds: float = 60.0

    @classmethod
    def from_config(cls, config: Any) -> SendSettings:
        return cls(
            connections=int(config["SEND_CONNECTIONS"]),
            rate_per_second=float(config["SEND_RATE_PER_SECOND"]),
            batch_size=int(config["SEND_BATCH_SIZE"]),
            max_attempts=int(config["SEND_MAX_ATTEMPTS"]),
            retry_base=float(config["SEND_RETRY_BASE_SECONDS"]),
            retry_cap=float(config["SEND_RETRY_MAX_SECONDS"]),
            lease_seconds=float(config["SEND_LEASE_SECONDS"]),
        )


class TokenBucket:
    """At most `rate` messages a second across threads, evenly spaced (a burst of one)."""

    def __init__(self, rate: float) -> None:
        self.rate = rate
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def reserve(self) -> float:
        """Take the next slot; returns how long to sleep until it (0: go now)."""
        if self.rate <= 0:
            return 0.0
        with self._lock:
            now = time.monotonic()
            slot = max(self._next, now)
            self._next = slot + 1.0 / self.rate
            return slot - now


def retry_delay(attempts: int, base: float, cap: float) -> float:
    """Full jitter: uniform over [0, min(cap, base * 2^(attempts-1))], so senders that
    failed together do not retry together."""
    return random.uniform(0, min(cap, base * 2 ** max(attempts - 1, 0)))


@dataclass
class _Run:
    app: Flask
    db: Database
    settings: SendSettings
    scope: list[int]
    messages: dict[int, EditionMessages]
    wait: bool
    run_id: str = field(default_factory=process_id)
    report: SendReport = field(default_factory=SendReport)
    lock: threading.Lock = field(default_factory=threading.Lock)
    stop: threading.Event = field(default_factory=threading.Event)
    error: BaseException | None = None
    aborted: str | None = None
    limiter: TokenBucket = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = TokenBucket(self.settings.rate_per_second)

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self.report, name, getattr(self.report, name) + n)
        if name == "resent_after_crash":
            metrics.LEASE_TAKEOVERS.inc(n)
        else:
            metrics.DELIVERIES.labels(name).inc(n)

    def snapshot(self) -> SendReport:
        with self.lock:
            return replace(self.report)

    def report_progress(
        self, progress: Callable[[SendProgress], None], session: Session, *, done: bool = False
    ) -> None:
        report_progress(
            progress, self.snapshot(), session, self.scope, self.run_id, utcnow(), done=done
        )


def _relay_problem(exc: DeliveryError) -> bool:
    """A refusal about us, not about the reader: do not burn their attempts on it."""
    cause = exc.__cause__
    if isinstance(cause, smtplib.SMTPAuthenticationError | smtplib.SMTPSenderRefused):
        return True
    return exc.code is None and exc.reply.startswith("cannot connect")


class _Sender(threading.Thread):
    def __init__(self, run: _Run, index: int) -> None:
        super().__init__(name=f"sender-{index}", daemon=True)
        self.run_ = run
        self.me = f"{run.run_id}:{index}"
        self.settings = run.settings
        self.lease = timedelta(seconds=run.settings.lease_seconds)
        self.renewed_at = 0.0
        self.store: LedgerStore
        self.transport: Transport

    # --- plumbing ---------------------------------------------------------------------

    def run(self) -> None:
        run = self.run_
        try:
            with run.app.app_context():
                self.store = LedgerStore(run.db, self.me)
                try:
                    self.transport = open_transport(run.app)
                    try:
                        self._loop()
                    finally:
                        try:
                            # Rows claimed but not started go back (stop, abort), after
                            # the outcomes are committed.
                            self.store.release()
                        finally:
                            self.transport.close()
                finally:
                    self.store.close()
        except BaseException as exc:  # surfaced by send_queued in the calling thread
            log.exception("sender thread failed")
            with run.lock:
                run.error = run.error or exc
            run.stop.set()

    # --- the loop ---------------------------------------------------------------------

    def _loop(self) -> None:
        run = self.run_
        while not run.stop.is_set():
            claimed = self._claim()
            if claimed is None:
                if not self._idle():
                    return
                continue
            edition_id, rows = claimed
            self._send_batch(run.messages[edition_id], rows)
            self.store.flush()

    def _claim(self) -> tuple[int, list[Claimed]] | None:
        now = utcnow()
        for edition_id in self.run_.scope:  # one edition at a time: the index is in id order
            rows = self.store.claim(edition_id, self.settings.batch_size, now, now + self.lease)
            if rows:
                self.renewed_at = time.monotonic()
                return edition_id, rows
        return None

    def _idle(self) -> bool:
        """Nothing claimable. Stop when the rest is final or in this run's other threads'
        hands (or at once without `wait`); else sleep until another sender's lease ends
        or a retry comes due."""
        run = self.run_
        if not run.wait:
            return False
        now = utcnow()
        left = status(self.store.session, run.scope, run.run_id, now)
        self.store.session.commit()
        if left.remaining == left.held_here:
            return False
        if left.remaining > left.held_here + left.held_elsewhere + left.retrying:
            return True  # a row came free meanwhile: claim again
        pause = 1.0
        if left.next_at is not None:
            pause = min(max((left.next_at - now).total_seconds(), 0.02), 1.0)
        run.stop.wait(pause)
        return True

    def _send_batch(self, messages: EditionMessages, rows: list[Claimed]) -> None:
        info = self.store.readers_of(rows)
        session = self.store.session
        recipients = recipient_values(
            session,
            [
                RecipientRow(
                    r.reader_id, info[r.reader_id].email, r.plan, info[r.reader_id].timezone
                )
                for r in rows
                if r.reader_id in info
            ],
            utcnow(),
        )
        session.commit()  # end whatever it read (see `LedgerStore.read`)
        for row in rows:
            if self.run_.stop.is_set():
                break
            reader = info.get(row.reader_id)
            if reader is None:
                continue  # the reader was deleted, and their row with them
            if reader.status != ReaderStatus.CONFIRMED:
                self._suppress_left(row, ReaderStatus(reader.status))
                continue
            self._send_one(messages, row, recipients[row.reader_id])

    def _send_one(self, messages: EditionMessages, row: Claimed, recipient: Recipient) -> None:
        run, store = self.run_, self.store
        try:
            message_id, data = messages.render(recipient, now_header())
        except ValueError as exc:  # this reader's values cannot be written into a message
            store.unbuildable(row, f"message could not be built: {exc}"[:1000])
            run.count("failed")
            return
        delay = run.limiter.reserve()
        if delay > 0:
            store.flush()  # never hold an outcome back while sleeping
            time.sleep(delay)
        now = utcnow()
        if time.monotonic() - self.renewed_at > self.settings.lease_seconds / 3:
            # A slow batch (rate limit, slow server) keeps the rest of its rows.
            store.renew(now + self.lease)
            self.renewed_at = time.monotonic()
        if not store.start(row, message_id, now + self.lease):
            self._not_started(row)
            return
        if row.state == DeliveryState.SENDING:
            run.count("resent_after_crash")
        try:
            send_bytes(run.app, recipient.email, data, transport=self.transport, delivery_id=row.id)
        except DeliveryError as exc:
            self._refused(row, recipient.email, exc)
            return
        store.sent(row, utcnow())
        run.count("sent")

    # --- outcomes other than sent ----------------------------------------------------

    def _not_started(self, row: Claimed) -> None:
        """The start was refused: the claim was lost (lease expired and taken over) or the
        reader left between the batch read and now."""
        found = self.store.reader_status(row.reader_id)
        if found is not None and found != ReaderStatus.CONFIRMED:
            self._suppress_left(row, found)

    def _suppress_left(self, row: Claimed, status: ReaderStatus) -> None:
        self.store.left(row, f"{status.value} before sending")
        self.run_.count("suppressed")

    def _refused(self, row: Claimed, email: str, exc: DeliveryError) -> None:
        run, store = self.run_, self.store
        reply = str(exc)[:1000]
        now = utcnow()
        if _relay_problem(exc):
            store.undo_start(row)  # this attempt never reached the reader's server
            with run.lock:
                run.aborted = run.aborted or f"the mail relay refused to take mail: {reply}"
            run.stop.set()
            return
        if isinstance(exc, PermanentDeliveryError):
            # The bounce first, in a transaction of its own: once it is committed, a
            # crash before the row's outcome only makes the row find its reader gone.
            store.flush()
            report = BounceReport(
                source="smtp",
                event_id=f"delivery {row.id}",
                kind=ReportKind.HARD_BOUNCE,
                recipient=email,
                diagnostic=reply,
                delivery_id=row.id,
                occurred_at=now,
            )
            with run.db.session() as session:
                record_report(session, report, now=now)
            store.refused(row, reply)
            run.count("suppressed")
            return
        attempts = row.attempts + 1
        if attempts >= self.settings.max_attempts:
            store.failed(row, reply)
            run.count("failed")
            return
        delay = retry_delay(attempts, self.settings.retry_base, self.settings.retry_cap)
        store.retry(row, reply, now + timedelta(seconds=delay))
        run.count("retried")


def _load_messages(app: Flask, session: Session, scope: list[int]) -> dict[int, EditionMessages]:
    """The composed messages of each edition in `scope` that has them; an edition that
    cannot be composed is left out, its cause recorded (logged only when it is news)."""
    editions = session.scalars(
        select(Edition)
        .where(Edition.id.in_(scope))
        .options(
            selectinload(Edition.stories).selectinload(EditionStory.story),
            selectinload(Edition.variants),
        )
    ).all()
    messages = {}
    for edition in editions:
        try:
            messages[edition.id] = EditionMessages(app, edition)
        except CannotCompose as exc:
            note_compose_error(edition, exc.message)
    return messages


def send_queued(
    app: Flask,
    edition_id: int | None = None,
    *,
    connections: int | None = None,
    rate_per_second: float | None = None,
    batch_size: int | None = None,
    progress: Callable[[SendProgress], None] | None = None,
    wait: bool = True,
) -> SendReport:
    """Send the queued rows of `edition_id` (of every edition being sent when None).

    With `wait`, return only when every row is final: sleep through retry backoffs and
    other senders' leases (reporting them through `progress`). Without it (the worker's
    job, which runs every minute), return when nothing is claimable right now.
    Raises `SendAborted` when the relay is unusable.
    """
    db: Database = app.extensions["db"]
    settings = SendSettings.from_config(app.config)
    if connections is not None:
        settings = replace(settings, connections=connections)
    if rate_per_second is not None:
        settings = replace(settings, rate_per_second=rate_per_second)
    if batch_size is not None:
        settings = replace(settings, batch_size=batch_size)
    with db.session() as session:
        scope = [edition_id] if edition_id is not None else sending_editions(session)
        messages = _load_messages(app, session, scope) if scope else {}
    run = _Run(app, db, settings, [e for e in scope if e in messages], messages, wait)
    if not run.scope:
        return run.report

    threads = [_Sender(run, i) for i in range(max(settings.connections, 1))]
    for thread in threads:
        thread.start()
    try:
        status_session = db.sessionmaker() if progress else None
        try:
            for thread in threads:
                while thread.is_alive():
                    thread.join(timeout=0.3)
                    if progress and status_session is not None:
                        run.report_progress(progress, status_session)
                        status_session.rollback()  # a fresh snapshot next time
        finally:
            if status_session is not None:
                status_session.close()
    except BaseException:
        run.stop.set()  # Ctrl-C: each thread records its outcome and gives back its rows
        for thread in threads:
            thread.join()
        raise
    with db.session() as session:
        finish_editions(session, run.scope, utcnow())
        if progress:
            run.report_progress(progress, session, done=True)
    if run.error is not None:
        raise run.error
    if run.aborted:
        raise SendAborted(run.aborted, run.snapshot())
    return run.snapshot()
