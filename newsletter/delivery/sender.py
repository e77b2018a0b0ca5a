"""The send loop: ledger rows in, SMTP out, every outcome written back to the ledger.

`send_queued` is a boundary, like a request or a job: it owns its transactions and
commits per message, because the ledger must say what happened to each message before
the next one goes (services elsewhere only flush).

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
Permanent refusals (5xx) suppress the row with the reply and mark the reader `bounced`,
so they get no more mail. A reader who is no longer confirmed when their row comes up is
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
import re
import smtplib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from flask import Flask
from sqlalchemy import case, func, select
from sqlalchemy.orm import Session, selectinload

from newsletter.billing.entitlement import Plan
from newsletter.db import Database, UTCDateTime, utcnow
from newsletter.delivery.ledger import (
    deliveries,
    finish_editions,
    pending,
    readers,
    sending_editions,
)
from newsletter.delivery.models import DeliveryState
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
from newsletter.mail.message import envelope_sender, now_header
from newsletter.mail.sending import open_transport
from newsletter.mail.transports import DeliveryError, PermanentDeliveryError, Transport
from newsletter.readers.models import ReaderStatus

log = logging.getLogger(__name__)

QUEUED, SENDING = DeliveryState.QUEUED, DeliveryState.SENDING


@dataclass
class SendReport:
    """What this run did (another process sharing the send counts its own)."""

    sent: int = 0
    retried: int = 0  # temporary refusals put back in the queue
    failed: int = 0  # temporary refusals with no attempt left
    suppressed: int = 0  # permanent refusals, and readers who left before their turn
    resent_after_crash: int = 0  # rows found `sending` after a crash and sent again

    @property
    def finished(self) -> int:
        return self.sent + self.failed + self.suppressed


@dataclass(frozen=True)
class SendProgress:
    report: SendReport
    remaining: int  # rows of the editions being sent that are not final yet
    held_elsewhere: int = 0  # of which leased by another sender (alive, or dead until expiry)
    retrying: int = 0  # of which waiting for their next attempt
    next_at: datetime | None = None  # when the next of those becomes claimable
    done: bool = False


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


class Claimed(NamedTuple):
    id: int
    reader_id: int
    plan: Plan
    state: DeliveryState
    attempts: int


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
    envelope_from: str = field(init=False)

    def __post_init__(self) -> None:
        self.limiter = TokenBucket(self.settings.rate_per_second)
        self.envelope_from = envelope_sender(self.app.config["MAIL_FROM"])

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            setattr(self.report, name, getattr(self.report, name) + n)

    def snapshot(self) -> SendReport:
        with self.lock:
            return replace(self.report)


class _Status(NamedTuple):
    remaining: int  # rows not final yet
    held_here: int  # of which leased by this run's threads
    held_elsewhere: int  # leased by another sender (alive, or dead until the lease ends)
    retrying: int  # waiting for their next attempt
    next_at: datetime | None  # when the next row held elsewhere or retrying is claimable


def _status(session: Session, run: _Run, now: datetime) -> _Status:
    """How many rows of the send are left, and what the unclaimable ones wait for."""
    d = deliveries.c
    leased = d.lease_until >= now
    here = leased & (func.substr(d.claimed_by, 1, len(run.run_id)) == run.run_id)
    elsewhere = leased & ~here
    later = (d.lease_until.is_(None) | (d.lease_until < now)) & (d.next_attempt_at > now)
    row = session.execute(
        select(
            func.count(),
            func.sum(case((here, 1), else_=0)),
            func.sum(case((elsewhere, 1), else_=0)),
            func.sum(case((later, 1), else_=0)),
            func.min(case((elsewhere, d.lease_until))),
            func.min(case((later, d.next_attempt_at))),
        ).where(
            d.edition_id.in_(run.scope),
            pending(),
            # A paused edition's rows wait for a later run: this one does not wait for them.
            d.edition_id.not_in(select(Edition.id).where(Edition.paused)),
        )
    ).one()
    remaining, held_here, held_elsewhere, retrying, lease_end, retry_at = row
    times = [t for t in (lease_end, retry_at) if t is not None]
    return _Status(
        remaining or 0,
        held_here or 0,
        held_elsewhere or 0,
        retrying or 0,
        min(times) if times else None,
    )


def _relay_problem(exc: DeliveryError) -> bool:
    """A refusal about us, not about the reader: do not burn their attempts on it."""
    cause = exc.__cause__
    if isinstance(cause, smtplib.SMTPAuthenticationError | smtplib.SMTPSenderRefused):
        return True
    return exc.code is None and exc.reply.startswith("cannot connect")


# The per-message ledger writes, in plain SQL on a raw driver connection: they run twice
# per message, and building and executing them through SQLAlchemy would cost more than
# the database does. `:name` parameters; "state IN ('queued', 'sending')" is written out
# as in the partial index `ix_deliveries_pending`, so both databases use it.
# A paused edition (`editions.paused`, set by staff) has nothing claimable; rows already
# claimed finish, so a pause takes effect within one batch per sender thread.
CLAIM = """UPDATE deliveries SET claimed_by = :me, lease_until = :lease_until
WHERE id IN (SELECT id FROM deliveries WHERE edition_id = :edition_id
AND NOT EXISTS (SELECT 1 FROM editions WHERE editions.id = :edition_id AND editions.paused)
AND state IN ('queued', 'sending') AND next_attempt_at <= :now
AND (lease_until IS NULL OR lease_until < :now) ORDER BY id LIMIT :n{lock})
RETURNING id, reader_id, plan, state, attempts"""
START = """UPDATE deliveries SET state = 'sending', attempts = attempts + 1,
message_id = :message_id, lease_until = :lease_until, resent_after_crash = {resent}
WHERE id = :id AND claimed_by = :me AND state IN ('queued', 'sending')
AND EXISTS (SELECT 1 FROM readers WHERE readers.id = deliveries.reader_id
AND readers.status = 'confirmed')"""
START_FIRST = START.format(resent="resent_after_crash")
START_AGAIN = START.format(resent="TRUE")  # found `sending` after a crash
SENT = """UPDATE deliveries SET state = 'sent', sent_at = :at, claimed_by = NULL,
lease_until = NULL WHERE id = :id AND state = 'sending'"""
RETRY = """UPDATE deliveries SET state = 'queued', last_reply = :reply, next_attempt_at = :at,
claimed_by = NULL, lease_until = NULL WHERE id = :id AND state = 'sending'"""
FAILED = """UPDATE deliveries SET state = 'failed', last_reply = :reply, claimed_by = NULL,
lease_until = NULL WHERE id = :id AND state = 'sending'"""
REFUSED = """UPDATE deliveries SET state = 'suppressed', last_reply = :reply,
claimed_by = NULL, lease_until = NULL WHERE id = :id AND state = 'sending'"""
UNDO = """UPDATE deliveries SET state = :state, attempts = :attempts, claimed_by = NULL,
lease_until = NULL WHERE id = :id AND state = 'sending'"""
# `readers.suppression.record_bounce` as one statement: the first reason recorded stays.
BOUNCE = """UPDATE readers SET status = 'bounced', suppression = COALESCE(suppression, 'bounced'),
suppressed_at = CASE WHEN suppression IS NULL THEN :at ELSE suppressed_at END,
suppressed_reason = CASE WHEN suppression IS NULL THEN :reply ELSE suppressed_reason END
WHERE id = :reader_id"""
LEFT = """UPDATE deliveries SET state = 'suppressed', last_reply = :reply, claimed_by = NULL,
lease_until = NULL WHERE id = :id AND claimed_by = :me AND state IN ('queued', 'sending')"""
UNBUILDABLE = """UPDATE deliveries SET state = 'failed', last_reply = :reply, claimed_by = NULL,
lease_until = NULL WHERE id = :id AND claimed_by = :me AND state IN ('queued', 'sending')"""
RENEW = """UPDATE deliveries SET lease_until = :lease_until
WHERE claimed_by = :me AND state = 'queued'"""
RELEASE = """UPDATE deliveries SET claimed_by = NULL, lease_until = NULL
WHERE claimed_by = :me AND state = 'queued'"""
_PARAM = re.compile(r":(\w+)")


class _Ledger:
    """One sender thread's own database connection for ledger writes.

    PostgreSQL: autocommit, and a write with the outcomes it carries is ONE statement
    (the outcomes become data-modifying CTEs), so one round trip per message; the
    connection runs with `synchronous_commit = off` (see the module docstring).
    SQLite: BEGIN IMMEDIATE ... COMMIT around the same statements, taking the write lock
    up front so a busy database makes it wait instead of failing.
    """

    def __init__(self, db: Database) -> None:
        self.postgres = db.is_postgres
        self.raw = db.engine.raw_connection()
        self.driver: Any = self.raw.driver_connection
        dialect = db.engine.dialect
        processor = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
        self._dt = processor or (lambda v: v)  # datetimes stored as SQLAlchemy does
        if self.postgres:
            self.driver.autocommit = True
            self.driver.execute("SET synchronous_commit = off")

    def close(self) -> None:
        try:
            if self.postgres:
                self.driver.execute("RESET synchronous_commit")
                self.driver.autocommit = False
        finally:
            self.raw.close()

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: self._dt(v) if isinstance(v, datetime) else v for k, v in params.items()}

    def _sql(self, sql: str) -> str:
        return _PARAM.sub(r"%(\1)s", sql) if self.postgres else sql

    def write(self, stmts: list[tuple[str, dict[str, Any]]], *, returning: bool = False) -> Any:
        """Run `stmts` atomically; the last one's rows (`returning`) or rowcount."""
        if self.postgres:
            sql, params = stmts[-1]
            params = dict(params)
            ctes = []
            for i, (part, part_params) in enumerate(stmts[:-1]):
                # Each earlier statement becomes a data-modifying CTE, its parameters
                # renamed w<i>_name so they cannot collide.
                renamed = _PARAM.sub(lambda m, i=i: f":w{i}_{m.group(1)}", part)
                ctes.append(f"w{i} AS ({renamed})")
                params.update({f"w{i}_{k}": v for k, v in part_params.items()})
            if ctes:
                sql = "WITH " + ", ".join(ctes) + " " + sql
            cur = self.driver.execute(self._sql(sql), self._params(params))
            return cur.fetchall() if returning else cur.rowcount
        cur = self.driver.cursor()
        try:
            cur.execute("BEGIN IMMEDIATE")
            for sql, params in stmts:
                cur.execute(sql, self._params(params))
            result = cur.fetchall() if returning else cur.rowcount
            cur.execute("COMMIT")
            return result
        except BaseException:
            if self.driver.in_transaction:
                self.driver.rollback()
            raise
        finally:
            cur.close()


class _Sender(threading.Thread):
    def __init__(self, run: _Run, index: int) -> None:
        super().__init__(name=f"sender-{index}", daemon=True)
        self.run_ = run
        self.me = f"{run.run_id}:{index}"
        self.settings = run.settings
        self.lease = timedelta(seconds=run.settings.lease_seconds)
        # Outcome writes not committed yet: they go with the next write (halving commits).
        self.pending: list[tuple[str, dict[str, Any]]] = []
        self.renewed_at = 0.0
        self.claim_sql = CLAIM.format(lock=" FOR UPDATE SKIP LOCKED" if run.db.is_postgres else "")
        self.session: Session  # reads: the batch's readers, recipient_values
        self.ledger: _Ledger
        self.transport: Transport

    # --- plumbing ---------------------------------------------------------------------

    def run(self) -> None:
        run = self.run_
        try:
            with run.app.app_context():
                self.session = run.db.sessionmaker()
                self.ledger = _Ledger(run.db)
                self.transport = open_transport(run.app)
                try:
                    self._loop()
                finally:
                    try:
                        # Rows claimed but not started go back (stop, abort). Outcomes are
                        # committed first: a statement must not touch a row twice.
                        self._write()
                        self._write((RELEASE, {"me": self.me}))
                    finally:
                        self.transport.close()
                        self.ledger.close()
                        self.session.close()
        except BaseException as exc:  # surfaced by send_queued in the calling thread
            log.exception("sender thread failed")
            with run.lock:
                run.error = run.error or exc
            run.stop.set()

    def _write(
        self, stmt: tuple[str, dict[str, Any]] | None = None, *, returning: bool = False
    ) -> Any:
        """Commit the pending outcomes together with `stmt`."""
        stmts = [*self.pending, stmt] if stmt is not None else list(self.pending)
        self.pending.clear()
        if not stmts:
            return None
        return self.ledger.write(stmts, returning=returning)

    def _read(self, stmt: Any) -> list[Any]:
        """A read in a transaction of its own (on SQLite a transaction that reads, then
        writes, fails if another writer committed in between)."""
        rows = list(self.session.execute(stmt))
        self.session.commit()
        return rows

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
            self._write()

    def _claim(self) -> tuple[int, list[Claimed]] | None:
        now = utcnow()
        for edition_id in self.run_.scope:  # one edition at a time: the index is in id order
            params = {
                "me": self.me,
                "lease_until": now + self.lease,
                "edition_id": edition_id,
                "now": now,
                "n": self.settings.batch_size,
            }
            found = self._write((self.claim_sql, params), returning=True)
            if found:
                self.renewed_at = time.monotonic()
                rows = [Claimed(r[0], r[1], Plan(r[2]), DeliveryState(r[3]), r[4]) for r in found]
                return edition_id, sorted(rows)
        return None

    def _idle(self) -> bool:
        """Nothing claimable. Stop when the rest is final or in this run's other threads'
        hands (or at once without `wait`); else sleep until another sender's lease ends
        or a retry comes due."""
        if not self.run_.wait:
            return False
        now = utcnow()
        status = _status(self.session, self.run_, now)
        self.session.commit()
        if status.remaining == status.held_here:
            return False
        if status.remaining > status.held_here + status.held_elsewhere + status.retrying:
            return True  # a row came free meanwhile: claim again
        pause = 1.0
        if status.next_at is not None:
            pause = min(max((status.next_at - now).total_seconds(), 0.02), 1.0)
        self.run_.stop.wait(pause)
        return True

    def _send_batch(self, messages: EditionMessages, rows: list[Claimed]) -> None:
        info = {
            r.id: r
            for r in self._read(
                select(readers.c.id, readers.c.email, readers.c.status, readers.c.timezone).where(
                    readers.c.id.in_([row.reader_id for row in rows])
                )
            )
        }
        recipients = recipient_values(
            self.session,
            [
                RecipientRow(
                    r.reader_id, info[r.reader_id].email, r.plan, info[r.reader_id].timezone
                )
                for r in rows
                if r.reader_id in info
            ],
            utcnow(),
        )
        self.session.commit()  # end whatever it read (see `_read`)
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
        run = self.run_
        try:
            message_id, data = messages.render(recipient, now_header())
        except ValueError as exc:  # this reader's values cannot be written into a message
            reply = f"message could not be built: {exc}"[:1000]
            self.pending.append((UNBUILDABLE, {"id": row.id, "me": self.me, "reply": reply}))
            run.count("failed")
            return
        delay = run.limiter.reserve()
        if delay > 0:
            self._write()  # never hold an outcome back while sleeping
            time.sleep(delay)
        now = utcnow()
        if time.monotonic() - self.renewed_at > self.settings.lease_seconds / 3:
            # A slow batch (rate limit, slow server) keeps the rest of its rows.
            self._write()  # alone: an outcome may be for a row RENEW also matches
            self._write((RENEW, {"me": self.me, "lease_until": now + self.lease}))
            self.renewed_at = time.monotonic()
        start = START_AGAIN if row.state == SENDING else START_FIRST
        params = {"id": row.id, "me": self.me, "message_id": message_id}
        if self._write((start, {**params, "lease_until": now + self.lease})) != 1:
            self._not_started(row)
            return
        if row.state == SENDING:
            run.count("resent_after_crash")
        try:
            self.transport.send_bytes(run.envelope_from, recipient.email, data)
        except DeliveryError as exc:
            self._refused(row, exc)
            return
        self.pending.append((SENT, {"id": row.id, "at": utcnow()}))
        run.count("sent")

    # --- outcomes other than sent ----------------------------------------------------

    def _not_started(self, row: Claimed) -> None:
        """The start was refused: the claim was lost (lease expired and taken over) or the
        reader left between the batch read and now."""
        found = self._read(select(readers.c.status).where(readers.c.id == row.reader_id))
        if found and found[0].status != ReaderStatus.CONFIRMED:
            self._suppress_left(row, ReaderStatus(found[0].status))

    def _suppress_left(self, row: Claimed, status: ReaderStatus) -> None:
        reason = f"{status.value} before sending"
        self.pending.append((LEFT, {"id": row.id, "me": self.me, "reply": reason}))
        self.run_.count("suppressed")

    def _refused(self, row: Claimed, exc: DeliveryError) -> None:
        run = self.run_
        reply = str(exc)[:1000]
        now = utcnow()
        if _relay_problem(exc):
            # Undo the start: this attempt never reached the reader's server.
            undo = {"id": row.id, "state": row.state.value, "attempts": row.attempts}
            self._write((UNDO, undo))
            with run.lock:
                run.aborted = run.aborted or f"the mail relay refused to take mail: {reply}"
            run.stop.set()
            return
        if isinstance(exc, PermanentDeliveryError):
            self.pending.append((REFUSED, {"id": row.id, "reply": reply}))
            self.pending.append((BOUNCE, {"reader_id": row.reader_id, "at": now, "reply": reply}))
            run.count("suppressed")
            return
        attempts = row.attempts + 1
        if attempts >= self.settings.max_attempts:
            self.pending.append((FAILED, {"id": row.id, "reply": reply}))
            run.count("failed")
            return
        delay = retry_delay(attempts, self.settings.retry_base, self.settings.retry_cap)
        at = now + timedelta(seconds=delay)
        self.pending.append((RETRY, {"id": row.id, "reply": reply, "at": at}))
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
    overrides = {
        "connections": connections,
        "rate_per_second": rate_per_second,
        "batch_size": batch_size,
    }
    settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
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
                        _report_progress(progress, run, status_session)
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
            _report_progress(progress, run, session, done=True)
    if run.error is not None:
        raise run.error
    if run.aborted:
        raise SendAborted(run.aborted, run.snapshot())
    return run.snapshot()


def _report_progress(
    progress: Callable[[SendProgress], None], run: _Run, session: Session, *, done: bool = False
) -> None:
    status = _status(session, run, utcnow())
    progress(
        SendProgress(
            run.snapshot(),
            remaining=status.remaining,
            held_elsewhere=status.held_elsewhere,
            retrying=status.retrying,
            next_at=status.next_at,
            done=done,
        )
    )
