"""Tracked-link clicks, written in batches off the request path.

The tracked redirect is the request we serve most (every story link of every email, and
every mail scanner that fetches them all). Writing its click in the request would cost a
transaction per redirect: more than everything else the redirect does. So the redirect
only appends the click to this process's buffer, and a writer thread stores the buffer
every `flush_seconds` (or sooner, once `batch_size` clicks wait) in one transaction: a
query for what the clicks name and one multi-row INSERT.

What that trades, on purpose: a click reaches the table up to `flush_seconds` after its
redirect, and clicks still in the buffer when a worker process is killed outright (SIGKILL,
a machine crash) are lost. A worker that exits normally (gunicorn's graceful shutdown,
a restart) writes its buffer first (`atexit`). Clicks are analytics: no click ever
charges the meter or changes what a reader may read. While the database is unreachable
the buffer keeps up to `max_pending` clicks and tries again; beyond that, new clicks are
dropped and counted in the log.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable
from datetime import datetime
from typing import NamedTuple

from sqlalchemy.orm import Session

log = logging.getLogger(__name__)


class PendingClick(NamedTuple):
    """A click as the redirect saw it; `services.write_clicks` adds what the database
    knows (the delivery time, hence the bot verdict)."""

    reader_id: int
    edition_id: int
    story_id: int
    at: datetime
    method: str
    user_agent: str | None
    ip: str | None


Writer = Callable[[Session, list[PendingClick]], int]


class ClickLog:
    """One per app and process. `record` is cheap and never touches the database."""

    def __init__(
        self,
        sessionmaker: Callable[[], Session],
        write: Writer,
        *,
        flush_seconds: float = 1.0,
        batch_size: int = 500,
        max_pending: int = 100_000,
        idle_seconds: float = 30.0,
    ) -> None:
        self._sessionmaker = sessionmaker
        self._write = write
        self.flush_seconds = flush_seconds
        self.batch_size = batch_size
        self.max_pending = max_pending
        self.idle_seconds = idle_seconds  # the writer thread ends after this long with nothing
        self.dropped = 0
        self._reset()
        _LOGS.add(self)

    def _reset(self) -> None:
        # Also after a fork: the child starts with an empty buffer and no writer thread.
        self._lock = threading.Lock()  # the buffer and the writer thread's handle
        self._write_lock = threading.Lock()  # one batch written at a time
        self._pending: list[PendingClick] = []
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, click: PendingClick) -> None:
        with self._lock:
            if len(self._pending) >= self.max_pending:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("click buffer full: %d clicks dropped so far", self.dropped)
                return
            self._pending.append(click)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name="click-log-writer", daemon=True
                )
                self._thread.start()
            if len(self._pending) >= self.batch_size:
                self._wake.set()

    def flush(self) -> int:
        """Write every click recorded so far; the number written. Safe from any thread.
        On a database error the clicks go back to the buffer and the error is raised."""
        written = 0
        with self._write_lock:
            while True:
                with self._lock:
                    batch = self._pending[: self.batch_size]
                    del self._pending[: self.batch_size]
                if not batch:
                    return written
                try:
                    with self._sessionmaker() as session, session.begin():
                        written += self._write(session, batch)
                except BaseException:
                    with self._lock:
                        keep = max(0, self.max_pending - len(self._pending))
                        self._pending[:0] = batch[:keep]
                    raise

    def close(self) -> None:
        """Write what is buffered and stop the writer thread: nothing is written after
        this returns (a test's app, before its database is emptied for the next test).
        A process that exits does the writing by itself."""
        with self._lock:
            self._closed = True
            self._wake.set()
        thread = self._thread
        if thread is not None:
            thread.join(10)
        self.flush()

    def _run(self) -> None:
        idle_since = time.monotonic()
        failures = 0
        while True:
            self._wake.wait(self.flush_seconds * (2 ** min(failures, 6)))
            self._wake.clear()
            try:
                if self.flush():
                    idle_since = time.monotonic()
                failures = 0
            except Exception:
                failures += 1
                log.exception("writing clicks failed (attempt %d); they are kept", failures)
            with self._lock:
                idle = not self._pending and time.monotonic() - idle_since > self.idle_seconds
                if idle or self._closed:
                    self._thread = None
                    return


# Every ClickLog of this process, for the exit and fork hooks (weakly: tests make many).
_LOGS: weakref.WeakSet[ClickLog] = weakref.WeakSet()


@atexit.register
def _flush_all_at_exit() -> None:
    for click_log in list(_LOGS):
        try:
            click_log.flush()
        except Exception:
            log.exception("could not write %d clicks at exit", click_log.pending)


def _after_fork_in_child() -> None:
    for click_log in list(_LOGS):
        click_log._reset()


os.register_at_fork(after_in_child=_after_fork_in_child)
