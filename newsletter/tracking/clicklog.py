"""Tracked-link clicks, written in batches off the request path.

The tracked redirect is the request we serve most (every story link of every email, and
every mail scanner that fetches them all). Writing its click in the request would cost a
transaction per redirect: more than everything else the redirect does. So the redirect
only appends the click to this process's buffer, and the buffer is stored in one
transaction (a query for what the clicks name and one multi-row INSERT) once its oldest
click is `flush_seconds` old or `batch_size` clicks wait. Who writes depends on the
server (WSGI's `wsgi.multithread`):

- A worker that serves one request at a time (gunicorn's sync workers): the thread that
  just answered a redirect, after its response has gone out (`flush_if_due`, registered
  by the view), so no client waits for it. A background thread only writes clicks no
  request came to write (a worker gone quiet). A writer thread busy beside the request
  thread would make the two take turns on the one GIL at every system call the request
  makes, which costs the redirects far more than the write does.
- A threaded worker (gthread), whose request threads share the GIL anyway: the background
  thread. There a request thread that wrote would keep its connection's next request
  waiting behind the write.

Every process writes what is left at exit.

What that trades, on purpose: a click reaches the table a second or two after its
redirect, and clicks still in the buffer when a worker process is killed outright (SIGKILL,
a machine crash) are lost. A worker that exits normally (gunicorn's graceful shutdown,
a restart) writes its buffer first (`atexit`). Clicks are analytics: no click ever
charges the meter or changes what a reader may read. While the database is unreachable
the buffer keeps up to `max_pending` clicks and tries again, less and less often; beyond
that, new clicks are dropped and counted in the log.
"""

from __future__ import annotations

import atexit
import itertools
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
        self._oldest = 0.0  # monotonic time the buffer's oldest click came in
        self._failures = 0  # writes failed in a row
        self._retry_at = 0.0  # after a failure, no request tries again before this
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._threaded = True  # as the last `record` said

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, click: PendingClick, *, threaded: bool = True) -> None:
        """Buffer a click. `threaded`: other threads of this process serve requests too
        (`wsgi.multithread`); when not, the caller runs `flush_if_due` after its response."""
        self._threaded = threaded
        with self._lock:
            if len(self._pending) >= self.max_pending:
                self.dropped += 1
                if self.dropped == 1 or self.dropped % 1000 == 0:
                    log.warning("click buffer full: %d clicks dropped so far", self.dropped)
                return
            if not self._pending:
                self._oldest = time.monotonic()
            self._pending.append(click)
            if self._thread is None and not self._closed:
                self._thread = threading.Thread(
                    target=self._run, name="click-log-writer", daemon=True
                )
                self._thread.start()
            if threaded and len(self._pending) >= self.batch_size:
                self._wake.set()

    def _due(self, age: float) -> bool:
        """Clicks wait and the oldest is `age` old (or a batch is full), outside a backoff."""
        now = time.monotonic()
        return (
            bool(self._pending)
            and now >= self._retry_at
            and (now - self._oldest >= age or len(self._pending) >= self.batch_size)
        )

    def flush_if_due(self) -> None:
        """Write one batch if the buffer is due: for the thread that just answered a
        redirect, after the response went out. One batch, not the whole buffer: with
        threaded workers other threads keep adding clicks, and a thread that wrote until
        the buffer was empty could go on for seconds while its connection's next request
        waited. Skips when another thread is writing; never raises (a failure is logged,
        and the clicks are kept for a later try)."""
        if self._due(self.flush_seconds) and self._write_lock.acquire(blocking=False):
            try:
                self._write_or_back_off(batches=1)
            finally:
                self._write_lock.release()

    def flush(self) -> int:
        """Write every click recorded so far; the number written. Safe from any thread.
        On a database error the clicks go back to the buffer and the error is raised."""
        with self._write_lock:
            return self._flush_locked()

    def _flush_locked(self, batches: int | None = None) -> int:
        """Write batches until the buffer is empty, or `batches` of them."""
        written = 0
        for _ in itertools.count() if batches is None else range(batches):
            with self._lock:
                batch = self._pending[: self.batch_size]
                del self._pending[: self.batch_size]
                if self._pending:
                    self._oldest = time.monotonic()  # close enough: written next time
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
        return written

    def _write_or_back_off(self, batches: int | None = None) -> None:
        """Write (the write lock held); after a failure wait longer and longer (up to
        about a minute at the default second) before anyone tries again."""
        try:
            self._flush_locked(batches)
        except Exception:
            self._failures += 1
            self._retry_at = time.monotonic() + self.flush_seconds * 2 ** min(self._failures, 6)
            log.exception("writing clicks failed (attempt %d); they are kept", self._failures)
        else:
            self._failures = 0
            self._retry_at = 0.0

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
        """The background thread: wakes every `flush_seconds` (or when a batch is full, in
        a threaded worker) and writes what is due; in a one-request-at-a-time worker only
        clicks that waited twice that long, which no request came to write. Ends when
        idle."""
        idle_since = time.monotonic()
        while True:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            age = self.flush_seconds if self._threaded else 2 * self.flush_seconds
            if self._due(age) and not self._closed:
                with self._write_lock:
                    self._write_or_back_off()
            with self._lock:
                if self._pending:
                    idle_since = time.monotonic()
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
