"""The ledger store of the send loop: every statement a sender thread runs, by name.

The sender (`newsletter.delivery.sender`) knows the methods of `LedgerStore` and nothing
of SQL. A row goes: claim (leased to one sender thread), start (`sending`, committed
before the message goes out), then its outcome; a slow batch renews its lease, and a
stopping thread releases the rows it claimed but never started.

The per-message writes are plain SQL on a raw driver connection: they run twice per
message, and building and executing them through SQLAlchemy would cost more than the
database does. Their table and column names are the models' (`tests/delivery/test_store.py`
checks every name against `Delivery.__table__` and `Reader.__table__`); states come from
`DeliveryState`, and the pending condition is the partial index's own (`PENDING_SQL`), so
both databases use it.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, NamedTuple, cast

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.billing.entitlement import Plan
from newsletter.db import Database, UTCDateTime
from newsletter.delivery.ledger import readers
from newsletter.delivery.models import PENDING_SQL, DeliveryState
from newsletter.readers.models import ReaderStatus

# The names the statements below write as {name}: states from their enums, and the
# pending condition exactly as the partial index `ix_deliveries_pending` has it.
_NAMES = {
    **{state.value: state.value for state in DeliveryState},
    "pending": PENDING_SQL,
    "confirmed": ReaderStatus.CONFIRMED.value,
    "free": "claimed_by = NULL, lease_until = NULL",
    "lock": "{lock}",
    "resent": "{resent}",
}


def _sql(template: str) -> str:
    return template.format(**_NAMES)


# A paused edition (`editions.paused`, set by staff) has nothing claimable; rows already
# claimed finish, so a pause takes effect within one batch per sender thread.
CLAIM = _sql("""UPDATE deliveries SET claimed_by = :me, lease_until = :lease_until
WHERE id IN (SELECT id FROM deliveries WHERE edition_id = :edition_id
AND NOT EXISTS (SELECT 1 FROM editions WHERE editions.id = :edition_id AND editions.paused)
AND {pending} AND next_attempt_at <= :now
AND (lease_until IS NULL OR lease_until < :now) ORDER BY id LIMIT :n{lock})
RETURNING id, reader_id, plan, state, attempts""")
_START = _sql("""UPDATE deliveries SET state = '{sending}', attempts = attempts + 1,
message_id = :message_id, lease_until = :lease_until, resent_after_crash = {resent}
WHERE id = :id AND claimed_by = :me AND {pending}
AND EXISTS (SELECT 1 FROM readers WHERE readers.id = deliveries.reader_id
AND readers.status = '{confirmed}')""")
START_FIRST = _START.format(resent="resent_after_crash")
START_AGAIN = _START.format(resent="TRUE")  # found `sending` after a crash
# Outcomes of a started row.
SENT = _sql("""UPDATE deliveries SET state = '{sent}', sent_at = :at, {free}
WHERE id = :id AND state = '{sending}'""")
RETRY = _sql("""UPDATE deliveries SET state = '{queued}', last_reply = :reply,
next_attempt_at = :at, {free} WHERE id = :id AND state = '{sending}'""")
FAILED = _sql("""UPDATE deliveries SET state = '{failed}', last_reply = :reply, {free}
WHERE id = :id AND state = '{sending}'""")
REFUSED = _sql("""UPDATE deliveries SET state = '{suppressed}', last_reply = :reply, {free}
WHERE id = :id AND state = '{sending}'""")
UNDO = _sql("""UPDATE deliveries SET state = :state, attempts = :attempts, {free}
WHERE id = :id AND state = '{sending}'""")
# Outcomes of a claimed row that was never started.
LEFT = _sql("""UPDATE deliveries SET state = '{suppressed}', last_reply = :reply, {free}
WHERE id = :id AND claimed_by = :me AND {pending}""")
UNBUILDABLE = _sql("""UPDATE deliveries SET state = '{failed}', last_reply = :reply, {free}
WHERE id = :id AND claimed_by = :me AND {pending}""")
# Leases.
RENEW = _sql("""UPDATE deliveries SET lease_until = :lease_until
WHERE claimed_by = :me AND state = '{queued}'""")
RELEASE = _sql("""UPDATE deliveries SET {free} WHERE claimed_by = :me AND state = '{queued}'""")

# Every statement by name, for the test that pins them to the models.
STATEMENTS = {
    "CLAIM": CLAIM,
    "START_FIRST": START_FIRST,
    "START_AGAIN": START_AGAIN,
    "SENT": SENT,
    "RETRY": RETRY,
    "FAILED": FAILED,
    "REFUSED": REFUSED,
    "UNDO": UNDO,
    "LEFT": LEFT,
    "UNBUILDABLE": UNBUILDABLE,
    "RENEW": RENEW,
    "RELEASE": RELEASE,
}
_PARAM = re.compile(r":(\w+)")

Write = tuple[str, dict[str, Any]]


class Claimed(NamedTuple):
    id: int
    reader_id: int
    plan: Plan
    state: DeliveryState
    attempts: int


class BatchReader(NamedTuple):
    id: int
    email: str
    status: str
    timezone: str


class LedgerStore:
    """One sender thread's ledger: its own database connection for the writes and a
    session for the reads, holding the rows claimed as `me`.

    Outcomes (`sent`, `retry`, ...) are not committed at once: they go with the next write
    (the next row's start, usually), halving the commits. `flush` commits them alone.

    PostgreSQL: autocommit, and a write with the outcomes it carries is ONE statement
    (the outcomes become data-modifying CTEs), so one round trip per message; the
    connection runs with `synchronous_commit = off` (see `newsletter.delivery.sender`).
    SQLite: BEGIN IMMEDIATE ... COMMIT around the same statements, taking the write lock
    up front so a busy database makes it wait instead of failing.
    """

    def __init__(self, db: Database, me: str) -> None:
        self.me = me
        self.postgres = db.is_postgres
        self.session: Session = db.sessionmaker()
        self._claim_sql = CLAIM.format(lock=" FOR UPDATE SKIP LOCKED" if self.postgres else "")
        self._pending: list[Write] = []
        self.raw = db.engine.raw_connection()
        self.driver: Any = cast(Any, self.raw.driver_connection)
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
            try:
                self.raw.close()
            finally:
                self.session.close()

    # --- reads ------------------------------------------------------------------------

    def read(self, stmt: Any) -> list[Any]:
        """A read in a transaction of its own (on SQLite a transaction that reads, then
        writes, fails if another writer committed in between)."""
        rows = list(self.session.execute(stmt))
        self.session.commit()
        return rows

    def readers_of(self, rows: list[Claimed]) -> dict[int, BatchReader]:
        """The readers of a claimed batch who still exist."""
        c = readers.c
        found = self.read(
            select(c.id, c.email, c.status, c.timezone).where(
                c.id.in_([row.reader_id for row in rows])
            )
        )
        return {r.id: BatchReader(r.id, r.email, r.status, r.timezone) for r in found}

    def reader_status(self, reader_id: int) -> ReaderStatus | None:
        found = self.read(select(readers.c.status).where(readers.c.id == reader_id))
        return ReaderStatus(found[0].status) if found else None

    # --- claims and leases ------------------------------------------------------------

    def claim(self, edition_id: int, n: int, now: datetime, lease_until: datetime) -> list[Claimed]:
        """Up to `n` due rows of the edition, in id order, leased to this thread."""
        params = {
            "me": self.me,
            "lease_until": lease_until,
            "edition_id": edition_id,
            "now": now,
            "n": n,
        }
        found = self._write((self._claim_sql, params), returning=True)
        rows = [Claimed(r[0], r[1], Plan(r[2]), DeliveryState(r[3]), r[4]) for r in found]
        return sorted(rows)

    def renew(self, lease_until: datetime) -> None:
        """Extend the lease of the rows claimed and not started."""
        self.flush()  # alone: an outcome may be for a row RENEW also matches
        self._write((RENEW, {"me": self.me, "lease_until": lease_until}))

    def release(self) -> None:
        """Give back the rows claimed and not started."""
        self.flush()  # a statement must not touch a row twice
        self._write((RELEASE, {"me": self.me}))

    # --- a message's life -------------------------------------------------------------

    def start(self, row: Claimed, message_id: str, lease_until: datetime) -> bool:
        """Mark the row `sending` (committed, with the pending outcomes). False when the
        claim was lost or the reader is no longer confirmed."""
        stmt = START_AGAIN if row.state == DeliveryState.SENDING else START_FIRST
        params = {"id": row.id, "me": self.me, "message_id": message_id}
        return self._write((stmt, {**params, "lease_until": lease_until})) == 1

    def undo_start(self, row: Claimed) -> None:
        """Put a started row back as it was claimed: the attempt never left us."""
        undo = {"id": row.id, "state": row.state.value, "attempts": row.attempts}
        self._write((UNDO, undo))

    def sent(self, row: Claimed, at: datetime) -> None:
        self._pending.append((SENT, {"id": row.id, "at": at}))

    def retry(self, row: Claimed, reply: str, at: datetime) -> None:
        """A temporary refusal: queued again, claimable from `at`."""
        self._pending.append((RETRY, {"id": row.id, "reply": reply, "at": at}))

    def failed(self, row: Claimed, reply: str) -> None:
        """A temporary refusal with no attempt left."""
        self._pending.append((FAILED, {"id": row.id, "reply": reply}))

    def refused(self, row: Claimed, reply: str) -> None:
        """A permanent refusal: the row is suppressed (the reader's bounce is recorded
        by `newsletter.deliverability.reports`, as every other bounce is)."""
        self._pending.append((REFUSED, {"id": row.id, "reply": reply}))

    def left(self, row: Claimed, reply: str) -> None:
        """A claimed row whose reader is no longer confirmed: suppressed, nothing sent."""
        self._pending.append((LEFT, {"id": row.id, "me": self.me, "reply": reply}))

    def unbuildable(self, row: Claimed, reply: str) -> None:
        """A claimed row whose message cannot be built: failed, nothing sent."""
        self._pending.append((UNBUILDABLE, {"id": row.id, "me": self.me, "reply": reply}))

    def flush(self) -> None:
        """Commit the pending outcomes."""
        self._write()

    # --- the driver -------------------------------------------------------------------

    def _write(self, stmt: Write | None = None, *, returning: bool = False) -> Any:
        """Commit the pending outcomes together with `stmt`: its rows (`returning`) or
        rowcount."""
        stmts = [*self._pending, stmt] if stmt is not None else list(self._pending)
        self._pending.clear()
        if not stmts:
            return None
        return self._execute(stmts, returning=returning)

    def _params(self, params: dict[str, Any]) -> dict[str, Any]:
        return {k: self._dt(v) if isinstance(v, datetime) else v for k, v in params.items()}

    def _sql(self, sql: str) -> str:
        return _PARAM.sub(r"%(\1)s", sql) if self.postgres else sql

    def _execute(self, stmts: list[Write], *, returning: bool) -> Any:
        """Run `stmts` atomically; the last one's rows (`returning`) or rowcount."""
        if self.postgres:
            sql, params = stmts[-1]
            params = dict(params)
            ctes = []
            for i, (part, part_params) in enumerate(stmts[:-1]):
                # Each earlier statement becomes a data-modifying CTE, its parameters
                # renamed w<i>_name so they cannot collide.
                renamed = _PARAM.sub(rf":w{i}_\1", part)
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
