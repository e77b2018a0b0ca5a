"""Deliver one edition to N confirmed readers through the real delivery path.

    .venv/bin/python bench/send.py [--readers 20000] [--connections 4] [--database-url URL]

The sink is Postfix's `smtp-sink` on loopback (Debian package `postfix`), which accepts
and throws away mail far faster than any Python server, so the figure is ours.

1. Setup (not timed): a scratch PostgreSQL database (default: the test_h3 database on
   this machine; its schema is dropped and made again), the 44 demo stories, today's
   10-story edition, N confirmed readers inserted in bulk (COPY).
2. Baseline: smtplib pushes N pre-built messages of the edition's size over the same
   number of connections (one thread each) to the same sink: half of them before the
   delivery, half after, so a drift of the shared machine weighs on both sides.
3. Delivery, in a child process as `newsletter edition send --now` would run it:
   `send_now` queues every confirmed reader in the ledger, then the send loop claims
   batches, personalizes each message, records it `sending`, hands it to SMTP, records
   it `sent`. Its peak memory is the child's ru_maxrss.
4. Checks: every ledger row is `sent`, the sink counted every message.

Targets: ratio >= 0.6 on PostgreSQL; peak <= 300 MB at 100,000 readers.
Prints one line per figure, the ratio last.

With `--dkim`, three deliveries of three editions (so each starts from a fresh ledger)
run in turn: unsigned, rsa-sha256 (a 2048-bit key made for the run) and rsa-sha256 +
ed25519-sha256, each between two halves of the unsigned smtplib baseline. Target: each
signed delivery keeps >= 0.5 of its baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path
from typing import Any

from common import (
    DEFAULT_PG_URL,
    BenchError,
    bench_app,
    build_edition,
    say,
    scratch_database,
)
from sqlalchemy import func, insert, select
from sqlalchemy.orm import selectinload

RATIO_TARGET = 0.6
DKIM_RATIO_TARGET = 0.5
MEMORY_TARGET_MB = 300
RESULT_MARK = "BENCH-RESULT "
SINK_INSTALL = "sudo DEBIAN_FRONTEND=noninteractive apt-get install -y postfix"


# --- the sink ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_smtp_sink() -> str:
    path = shutil.which("smtp-sink") or (
        "/usr/sbin/smtp-sink" if os.access("/usr/sbin/smtp-sink", os.X_OK) else None
    )
    if path is None:
        raise BenchError(
            "smtp-sink not found. It comes with Debian's postfix package:\n"
            f"    {SINK_INSTALL}\n"
            "(choose 'No configuration' if asked; the bench never starts Postfix itself)"
        )
    return path


class Sink:
    """`smtp-sink -c`: accepts every message and throws it away (no -d/-D: nothing is
    written), printing running counters ("sess=1 quit=1 mesg=3") that we read back."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.counters = tmp / "smtp-sink.out"
        self.proc: subprocess.Popen[bytes] | None = None
        self._out: Any = None

    def start(self) -> None:
        argv = [find_smtp_sink(), "-c"]
        if os.geteuid() == 0:
            argv += ["-u", "nobody"]  # required when run as root
        # Backlog 1000: connections are never refused while the sink is busy.
        argv += [f"127.0.0.1:{self.port}", "1000"]
        self._out = self.counters.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._out, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace") if self.proc.stderr else ""
                raise BenchError(f"smtp-sink exited: {err.strip()}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        raise BenchError("smtp-sink did not start listening within 10 s")

    def messages(self) -> int:
        """Messages received so far (its counter is updated when "." is received)."""
        text = self.counters.read_bytes().decode(errors="replace")
        last = text.replace("\r", "\n").strip().rsplit("\n", 1)[-1]
        fields = dict(part.split("=", 1) for part in last.split() if "=" in part)
        return int(fields.get("mesg", 0))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._out is not None:
            self._out.close()

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


@contextmanager
def running_sink(tmp: Path) -> Iterator[Sink]:
    sink = Sink(tmp)
    sink.start()
    try:
        yield sink
    finally:
        sink.stop()


# --- setup -------------------------------------------------------------------------------


def insert_readers(app: Any, count: int) -> None:
    """`count` confirmed readers in one COPY (PostgreSQL) or one executemany (SQLite)."""
    from newsletter.db import utcnow
    from newsletter.readers.models import Reader, ReaderStatus

    db = app.extensions["db"]
    now = utcnow()
    columns = [
        "email",
        "email_key",
        "status",
        "timezone",
        "delivery_hour",
        "is_staff",
        "signin_nonce",
        "created_at",
        "confirmed_at",
    ]

    def row(n: int) -> tuple[Any, ...]:
        email = f"reader.{n}@example.com"
        return (email, email, ReaderStatus.CONFIRMED.value, "UTC", 6, False, 0, now, now)

    if db.is_postgres:
        raw = db.engine.raw_connection()
        try:
            cursor = raw.cursor()
            with cursor.copy(f"COPY readers ({', '.join(columns)}) FROM STDIN") as copy:
                for n in range(count):
                    copy.write_row(row(n))
            # Statistics, as autovacuum would have gathered long before a real send (the
            # readers table grows day by day): right after the COPY the planner would
            # take the table for empty, a state no production send starts from.
            cursor.execute("ANALYZE readers")
            raw.commit()
        finally:
            raw.close()
        return
    with db.engine.begin() as conn:
        conn.execute(
            insert(Reader.__table__),
            [dict(zip(columns, row(n), strict=True)) for n in range(count)],
        )


def sample_message(app: Any, edition_id: int) -> bytes:
    """A free reader's message of this edition: what the baseline sends N times."""
    from newsletter.billing.entitlement import Plan
    from newsletter.editions.models import Edition, EditionStory
    from newsletter.editions.personalize import EditionMessages, Recipient
    from newsletter.mail.message import now_header

    with app.app_context(), app.extensions["db"].session() as session:
        edition = session.scalars(
            select(Edition)
            .where(Edition.id == edition_id)
            .options(
                selectinload(Edition.stories).selectinload(EditionStory.story),
                selectinload(Edition.variants),
            )
        ).one()
        messages = EditionMessages(app, edition)
        recipient = Recipient(123_456, "reader.123456@example.com", Plan.FREE, free_left=10)
        return messages.render(recipient, now_header())[1]


# --- the baseline ------------------------------------------------------------------------


def cpu_seconds() -> float:
    """CPU time of this process so far, every thread, user and system."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def baseline(sink: Sink, message: bytes, count: int, connections: int, first: int = 0) -> float:
    """Seconds for smtplib to push `count` copies of `message` (to readers `first`...)
    over `connections` connections (a thread each, as the send loop has), each reused
    for its share."""
    import smtplib

    errors: list[BaseException] = []

    def worker(index: int) -> None:
        try:
            conn = smtplib.SMTP("127.0.0.1", sink.port, timeout=30)
            conn.ehlo()
            for n in range(first + index, first + count, connections):
                conn.sendmail("daily@bothsidesdaily.com", [f"reader.{n}@example.com"], message)
            conn.quit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    seconds = time.perf_counter() - started
    if errors:
        raise BenchError(f"baseline failed: {errors[0]!r}")
    return seconds


# --- the delivery (child process) --------------------------------------------------------


def child(spec: dict[str, Any]) -> None:
    """Runs in its own process: the send, as `newsletter edition send --now` runs it."""
    from newsletter.app import create_app
    from newsletter.delivery import services

    app = create_app(spec["settings"])
    enqueue_seconds: list[float] = []
    enqueue_now = services.enqueue_now

    def timed_enqueue(*args: Any, **kwargs: Any) -> int:
        t0 = time.perf_counter()
        try:
            return enqueue_now(*args, **kwargs)
        finally:
            enqueue_seconds.append(time.perf_counter() - t0)

    services.enqueue_now = timed_enqueue  # to report the ledger's share apart
    progress = _progress()
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    with app.app_context():
        run = services.send_now(app, date.fromisoformat(spec["day"]), progress=progress)
    seconds = time.perf_counter() - started
    cpu = cpu_seconds() - cpu_before
    getattr(progress, "close", lambda: None)()
    report = run.report
    result = {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "enqueue_seconds": sum(enqueue_seconds),
        "queued": run.queued,
        "sent": report.sent,
        "retried": report.retried,
        "failed": report.failed,
        "suppressed": report.suppressed,
        "maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,  # KB on Linux
    }
    print(RESULT_MARK + json.dumps(result), flush=True)


def _progress() -> Any:
    """What the CLI passes (so the send loop does the same status queries); shown only
    on a terminal."""
    if sys.stderr.isatty():
        from newsletter.delivery.commands import ProgressLine

        return ProgressLine()
    return lambda progress: None


def deliver(spec: dict[str, Any]) -> dict[str, Any]:
    env = {**os.environ, "BENCH_SEND_SPEC": json.dumps(spec)}
    proc = subprocess.run(
        [sys.executable, __file__, "--child"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        raise BenchError(f"the delivery process failed (exit {proc.returncode}); see above")
    return json.loads(lines[-1][len(RESULT_MARK) :])


def ledger_states(app: Any, edition_id: int) -> dict[str, int]:
    from newsletter.delivery.models import Delivery

    with app.extensions["db"].session() as session:
        rows = session.execute(
            select(Delivery.state, func.count())
            .where(Delivery.edition_id == edition_id)
            .group_by(Delivery.state)
        )
        return {str(state.value): n for state, n in rows}


# --- main --------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=20_000, help="default: 20000")
    parser.add_argument(
        "--connections", type=int, help="SMTP connections (default: SEND_CONNECTIONS, 4)"
    )
    parser.add_argument(
        "--database-url", default=DEFAULT_PG_URL, help=f"default: {DEFAULT_PG_URL} (wiped)"
    )
    parser.add_argument("--wipe", action="store_true", help="allow wiping --database-url")
    parser.add_argument(
        "--dkim", action="store_true", help="unsigned vs rsa-sha256 vs rsa + ed25519 deliveries"
    )
    args = parser.parse_args()
    find_smtp_sink()  # before any setup: say how to get it
    if args.dkim:
        return dkim_main(args)

    with (
        tempfile.TemporaryDirectory(prefix="bench-send-") as tmp_name,
        scratch_database(args.database_url, wipe=args.wipe) as url,
    ):
        tmp = Path(tmp_name)
        with running_sink(tmp) as sink:
            settings: dict[str, Any] = {
                "DATABASE_URL": url,
                "MAIL_URL": sink.url,
                "SECRET_KEY": os.urandom(32).hex(),
            }
            if args.connections:
                settings["SEND_CONNECTIONS"] = args.connections
            app = bench_app(url, tmp_name, **settings)
            connections = int(app.config["SEND_CONNECTIONS"])
            built = build_edition(app)
            started = time.perf_counter()
            insert_readers(app, args.readers)
            insert_seconds = time.perf_counter() - started
            message = sample_message(app, built.edition_id)
            settings.update({k: app.config[k] for k in ("BASE_URL", "MAIL_FROM", "POSTAL_ADDRESS")})
            settings["OUTBOX_DIR"] = str(tmp / "outbox")
            n = args.readers

            before = sink.messages()
            half = n // 2
            cpu_0 = cpu_seconds()
            base_first = baseline(sink, message, half, connections)
            cpu_1 = cpu_seconds()
            result = deliver({"settings": settings, "day": built.day.isoformat()})
            cpu_2 = cpu_seconds()
            base_second = baseline(sink, message, n - half, connections, first=half)
            base_cpu = (cpu_1 - cpu_0) + (cpu_seconds() - cpu_2)
            received = sink.messages() - before
            states = ledger_states(app, built.edition_id)
            app.extensions["db"].dispose()

    if states != {"sent": n} or result["sent"] != n:
        raise BenchError(f"not every reader got the edition: ledger {states}, run {result}")
    if received != 2 * n:
        raise BenchError(f"the sink counted {received} messages, expected {2 * n}")

    base_rate = n / (base_first + base_second)
    rate = n / result["seconds"]
    send_rate = n / (result["seconds"] - result["enqueue_seconds"])
    peak_mb = result["maxrss_kb"] / 1024
    ratio = rate / base_rate
    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    say(
        f"send: {n} confirmed readers on {backend}, {connections} SMTP connections to "
        f"smtp-sink, message {len(message) / 1024:.1f} KB; readers inserted in "
        f"{insert_seconds:.1f} s (setup)"
    )
    say(
        f"send: baseline smtplib {half / base_first:.0f} msg/s before the delivery, "
        f"{(n - half) / base_second:.0f} msg/s after; {base_rate:.0f} msg/s over all {n}"
    )
    say(
        f"send: delivery {result['seconds']:.1f} s = ledger enqueue "
        f"{result['enqueue_seconds']:.1f} s + send loop "
        f"{result['seconds'] - result['enqueue_seconds']:.1f} s ({send_rate:.0f} msg/s); "
        f"every row sent, the sink counted every message"
    )
    say(
        f"send: CPU per message (Python process; PostgreSQL and smtp-sink not counted): "
        f"delivery {result['cpu_seconds'] / n * 1e6:.0f} µs vs baseline "
        f"{base_cpu / n * 1e6:.0f} µs"
    )
    memory_ok = "met" if peak_mb <= MEMORY_TARGET_MB else "MISSED"
    ratio_ok = "met" if ratio >= RATIO_TARGET else "MISSED"
    say(
        f"send: peak memory of the delivery process {peak_mb:.0f} MB (target <= "
        f"{MEMORY_TARGET_MB} MB at 100,000: {memory_ok}); ratio target >= {RATIO_TARGET}: "
        f"{ratio_ok}"
    )
    say(
        f"send: {rate:.0f} msg/s vs baseline {base_rate:.0f} msg/s, ratio {ratio:.2f}, "
        f"peak {peak_mb:.0f} MB"
    )
    return 0


def write_dkim_keys(tmp: Path) -> tuple[Path, Path]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

    paths = (tmp / "dkim-rsa.pem", tmp / "dkim-ed25519.pem")
    made = (
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        ed25519.Ed25519PrivateKey.generate(),
    )
    for path, key in zip(paths, made, strict=True):
        path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    return paths


def dkim_main(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from newsletter.db import utcnow

    with (
        tempfile.TemporaryDirectory(prefix="bench-send-") as tmp_name,
        scratch_database(args.database_url, wipe=args.wipe) as url,
    ):
        tmp = Path(tmp_name)
        rsa_path, ed_path = write_dkim_keys(tmp)
        rsa_settings = {"DKIM_SELECTOR": "bench", "DKIM_PRIVATE_KEY_FILE": str(rsa_path)}
        runs: list[tuple[str, dict[str, Any]]] = [
            ("unsigned", {}),
            ("rsa-sha256", rsa_settings),
            (
                "rsa-sha256 + ed25519-sha256",
                {
                    **rsa_settings,
                    "DKIM_ED25519_SELECTOR": "bench-ed",
                    "DKIM_ED25519_PRIVATE_KEY_FILE": str(ed_path),
                },
            ),
        ]
        with running_sink(tmp) as sink:
            settings: dict[str, Any] = {
                "DATABASE_URL": url,
                "MAIL_URL": sink.url,
                "SECRET_KEY": os.urandom(32).hex(),
            }
            if args.connections:
                settings["SEND_CONNECTIONS"] = args.connections
            app = bench_app(url, tmp_name, **settings)
            connections = int(app.config["SEND_CONNECTIONS"])
            insert_readers(app, args.readers)
            settings.update({k: app.config[k] for k in ("BASE_URL", "MAIL_FROM", "POSTAL_ADDRESS")})
            settings["OUTBOX_DIR"] = str(tmp / "outbox")
            n, half = args.readers, args.readers // 2
            figures = []
            for index, (name, extra) in enumerate(runs):
                built = build_edition(app, now=utcnow() + timedelta(days=index))
                message = sample_message(app, built.edition_id)
                before = sink.messages()
                base = baseline(sink, message, half, connections)
                result = deliver({"settings": {**settings, **extra}, "day": built.day.isoformat()})
                base += baseline(sink, message, n - half, connections, first=half)
                states = ledger_states(app, built.edition_id)
                if states != {"sent": n} or sink.messages() - before != 2 * n:
                    raise BenchError(f"{name}: not every reader got the edition: {states}")
                rate, base_rate = n / result["seconds"], n / base
                figures.append((name, rate, base_rate, rate / base_rate))
                say(
                    f"send dkim: {name}: {rate:.0f} msg/s vs baseline {base_rate:.0f} msg/s, "
                    f"ratio {rate / base_rate:.2f} ({n} readers, {connections} connections, "
                    f"message {len(message) / 1024:.1f} KB unsigned)"
                )
            app.extensions["db"].dispose()
    unsigned = figures[0][1]
    for name, rate, _, ratio in figures[1:]:
        ok = "met" if ratio >= DKIM_RATIO_TARGET else "MISSED"
        say(
            f"send dkim: {name} keeps {rate / unsigned:.2f} of the unsigned delivery; "
            f"ratio target >= {DKIM_RATIO_TARGET}: {ok}"
        )
    say("send dkim: " + ", ".join(f"{name} ratio {ratio:.2f}" for name, _, _, ratio in figures))
    return 0


if __name__ == "__main__":
    try:
        if sys.argv[1:] == ["--child"]:
            child(json.loads(os.environ["BENCH_SEND_SPEC"]))
            sys.exit(0)
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
