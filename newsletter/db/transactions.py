"""The transaction modes the code uses, and the one retry for colliding transactions.

Services take a `Session` (or, for single statements, a `Connection`) and never commit;
the boundary that opened the transaction commits it once. There are four modes:

REQUEST
    `db_session()`: the session of the current request (or app context), opened on first
    use, committed by the view, rolled back and closed by the app context's teardown.
UNIT OF WORK
    `Database.session()`: a job's or command's transaction, committed when the `with`
    block ends without error. `Database.session(write=True)` for one that reads, then
    writes what it read: on SQLite it takes the write lock at BEGIN (`BEGIN IMMEDIATE`),
    so it waits for another writer rather than failing mid-way. `committed(db, work)`
    runs one and retries it when it collided with another transaction.
AUTOCOMMIT
    `Database.autocommit()`: a connection where each statement is its own transaction,
    for statements atomic on their own (a read charge, a webhook's event record). On
    PostgreSQL it saves the BEGIN and COMMIT round trips.
DRIVER
    `driver_connection(session)` and `DriverStatement`: the DBAPI connection under a
    SQLAlchemy one, for COPY and the few statements of the hottest requests. It shares
    the transaction of the connection it came from. The send loop's `LedgerStore` holds
    one raw connection of its own (`Database.engine.raw_connection()`).

Request transactions on SQLite begin deferred: a request that reads and then writes can
meet "database is locked" if another writer committed in between. The few that must not
take the write lock first (`billing.locking.lock`); the rest run one write each.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy.orm import Session

from newsletter.db.dialect import is_conflict

if TYPE_CHECKING:
    from newsletter.db.sessions import Database

log = logging.getLogger(__name__)
T = TypeVar("T")

RETRY_ATTEMPTS = 3


def retry_conflicts(
    work: Callable[[], T],
    *,
    attempts: int = RETRY_ATTEMPTS,
    also: tuple[type[Exception], ...] = (),
) -> T:
    """`work()`, run again (up to `attempts` runs in all) when it failed by colliding
    with a concurrent transaction (`dialect.is_conflict`) or raised one of `also`.
    `work` must open and end its own transaction, so that each run starts afresh."""
    for attempt in range(1, attempts + 1):
        try:
            return work()
        except Exception as error:
            if attempt == attempts or not (is_conflict(error) or isinstance(error, also)):
                raise
            log.info("transaction collided (%s); running it again", error)
            # A short random wait, so that two that collided do not collide again.
            time.sleep(random.uniform(0, 0.05 * attempt))
    raise AssertionError("unreachable: the last attempt returns or raises")


def committed(
    db: Database,
    work: Callable[[Session], T],
    *,
    write: bool = True,
    attempts: int = RETRY_ATTEMPTS,
    also: tuple[type[Exception], ...] = (),
) -> T:
    """`work(session)` in a unit of work of its own (`Database.session`), committed, and
    retried as `retry_conflicts` does."""

    def run() -> T:
        with db.session(write=write) as session:
            return work(session)

    return retry_conflicts(run, attempts=attempts, also=also)
