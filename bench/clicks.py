"""Tracked redirects and read confirmations under gunicorn, against a bare Flask redirect.

    .venv/bin/python bench/clicks.py [--readers 10000] [--rounds 3] [--seconds 5]
                                     [--connections 32] [--database-url URL]

1. Setup (not timed): migrates a scratch PostgreSQL database (its schema is dropped and
   made again), loads the demo stories, assembles today's 10-story edition, inserts
   `--readers` confirmed free readers, each with a delivery of that edition sent an hour
   ago, and writes the requests to replay, shuffled so that consecutive requests come from
   different readers: a tracked link `/r/<token>` per reader and story; and a read
   confirmation per reader and story, `POST /stories/<slug>/read` with the signed
   per-view token the story page carries, the `bsd_reading` cookie the tracked redirect
   sets, and a browser User-Agent. FREE_STORIES_PER_MONTH is set above the edition's
   size, so every confirmation is allowed; each round replays a fresh slice of them, so
   every measured confirmation is a first read, which writes to the meter.
2. Baseline: a bare Flask route answering `GET /r/<token>` with a 302
   (bench/baseline_app.py), under the same gunicorn settings, with the same requests.
3. The app (`newsletter.app:create_app()`): tracked redirects and read confirmations.

Both servers are `gunicorn -w 4 -k sync` on loopback ports, started before and warmed up,
then measured in `--rounds` rounds of baseline, redirect, read confirmation,
`--seconds` each: on a shared, noisy 2-core machine, interleaving keeps a burst of
someone else's work from landing on one figure only. Load comes from `wrk` (Debian
package `wrk`) with bench/clicks.lua: `-t 2 -c 32 --latency`. Every response's status is
checked (302 for redirects, 200 for confirmations), and afterwards the database must hold
one click per answered redirect and one read per answered confirmation.

A figure is all its rounds' answered requests over their total time; its p99 is the worst
round's. Targets: redirect >= 0.5 of the baseline's requests/s, read confirmation >= 0.35,
p99 <= 50 ms. Prints one line per figure, the ratio last; exits 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from common import (
    BenchError,
    machine_ticks,
    postgres_pids,
    proc_cpu,
    process_tree,
    say,
    scratch_database,
)
from sqlalchemy import func, insert, select
from sqlalchemy.engine import make_url

from newsletter.app import create_app
from newsletter.billing.entitlement import Plan
from newsletter.db import utcnow
from newsletter.delivery.models import Delivery, DeliveryState
from newsletter.editions.models import EditionStory
from newsletter.readers.models import Reader, ReaderStatus
from newsletter.stories.models import Story
from newsletter.tokens import LinkSigner, Purpose, make_compact
from newsletter.tracking.meter import month_key, month_number
from newsletter.tracking.models import Click, Read

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
VENV_BIN = Path(sys.executable).parent
# The PostgreSQL database this bench wipes unless told otherwise.
DEFAULT_PG_URL = "postgresql+psycopg://root@127.0.0.1:5432/test_h4"
REDIRECT_TARGET = 0.5
READ_TARGET = 0.35
P99_TARGET_MS = 50.0
WORKERS = 4
WRK_THREADS = 2
FREE_STORIES_PER_MONTH = 1000  # above any edition's size: every confirmation is allowed
HISTORY_MONTH, HISTORY_DAYS = "2000-01", 400  # the reads already there: another month
TIMEZONES = ("UTC", "America/New_York", "Europe/Paris", "Asia/Tokyo", "America/Los_Angeles")
WRK_LINE = re.compile(
    r"CLICKS expected=(\d+) unexpected=(\d+) last_unexpected=(\S*) p99_us=(\d+) "
    r"requests=(\d+) duration_us=(\d+) connect_errors=(\d+) read_errors=(\d+) "
    r"write_errors=(\d+) timeouts=(\d+)"
)


class Requests:
    """A file of requests for bench/clicks.lua: METHOD, path, cookie, body, tab-separated."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.count = 0
        self._f = path.open("w")

    def add(self, method: str, target: str, cookie: str = "", body: str = "") -> None:
        self._f.write(f"{method}\t{target}\t{cookie}\t{body}\n")
        self.count += 1

    def close(self) -> None:
        self._f.close()


# --- setup ---------------------------------------------------------------------------


def setup_app(url: str, tmp: Path, secret: str):  # type: ignore[no-untyped-def]
    return create_app(
        {
            "DATABASE_URL": url,
            "SECRET_KEY": secret,
            "BASE_URL": "http://127.0.0.1",
            "OUTBOX_DIR": str(tmp / "outbox"),
        }
    )


def build_edition(app) -> int:  # type: ignore[no-untyped-def]
    """The demo stories and today's edition; its id."""
    from newsletter.editions.assembly import assemble
    from newsletter.stories.demo import load_demo

    now = utcnow()
    with app.app_context(), app.extensions["db"].session() as session:
        load_demo(session, now=now)
    with app.app_context(), app.extensions["db"].session() as session:
        return assemble(session, now.date(), now=now).edition.id


@dataclass
class Fixture:
    redirects: Requests  # every (reader, story) link, replayed by every round
    warm_redirects: Requests
    warm_reads: Requests
    reads: list[Requests]  # one disjoint slice of confirmations per round
    readers: int
    stories: int


def make_fixture(  # type: ignore[no-untyped-def]
    app, secret: str, edition_id: int, readers: int, rounds: int, out: Path
) -> Fixture:
    """Readers with a sent delivery, and the request files wrk replays."""
    db = app.extensions["db"]
    now = utcnow()
    with app.app_context(), db.session() as session:
        stories = session.execute(
            select(Story.id, Story.slug)
            .join(EditionStory, EditionStory.story_id == Story.id)
            .where(EditionStory.edition_id == edition_id)
            .order_by(EditionStory.position)
        ).all()
        session.execute(
            insert(Reader),
            [
                {
                    "email": f"reader.{n}@example.com",
                    "email_key": f"reader.{n}@example.com",
                    "status": ReaderStatus.CONFIRMED,
                    "timezone": TIMEZONES[n % len(TIMEZONES)],
                    "delivery_hour": 6,
                    "is_staff": False,
                    "signin_nonce": 0,
                    "created_at": now - timedelta(days=30),
                    "confirmed_at": now - timedelta(days=30),
                }
                for n in range(readers)
            ],
        )
        ordered = select(Reader.id, Reader.timezone).order_by(Reader.id)
        zones = {rid: zone for rid, zone in session.execute(ordered)}
        reader_ids = list(zones)
        session.execute(
            insert(Delivery),
            [
                {
                    "edition_id": edition_id,
                    "reader_id": rid,
                    "plan": Plan.FREE,
                    "state": DeliveryState.SENT,
                    "attempts": 1,
                    "queued_at": now - timedelta(hours=1, minutes=5),
                    "next_attempt_at": now - timedelta(hours=1, minutes=5),
                    "sent_at": now - timedelta(hours=1),
                }
                for rid in reader_ids
            ],
        )
        # Last month's reads: a live meter's table is never empty, and the planner must
        # see that (a plan made for an empty table scans it whole as it grows).
        session.execute(
            insert(Read),
            [
                {
                    "reader_id": rid,
                    "story_id": sid,
                    "month": HISTORY_MONTH,
                    "metered": True,
                    "slot": slot,
                    "at": now - timedelta(days=HISTORY_DAYS),
                }
                for rid in reader_ids
                for slot, (sid, _) in enumerate(stories[:3], start=1)
            ],
        )
    signer = LinkSigner(secret)
    pairs = [(rid, sid, slug) for rid in reader_ids for sid, slug in stories]
    rng = random.Random(20251125)
    rng.shuffle(pairs)

    redirects = Requests(out / "redirects.tsv")
    for rid, sid, _ in pairs:
        redirects.add("GET", f"/r/{signer.sign(rid, edition_id, sid)}")
    warm_redirects = Requests(out / "warm-redirects.tsv")
    for rid, sid, _ in pairs[-5000:]:
        warm_redirects.add("GET", f"/r/{signer.sign(rid, edition_id, sid)}")

    cookies = {
        rid: "bsd_reading=" + make_compact(Purpose.READING, rid, edition_id, secret=secret)
        for rid in reader_ids
    }
    # What the story page puts in its view token: the meter's month in the reader's zone.
    months = {rid: month_number(month_key(zone, utcnow())) for rid, zone in zones.items()}
    rng.shuffle(pairs)
    slices = [Requests(out / f"reads-{n}.tsv") for n in range(rounds + 1)]
    size = len(pairs) // len(slices)
    for n, part in enumerate(slices):
        for rid, sid, slug in pairs[n * size : (n + 1) * size]:
            token = make_compact(
                Purpose.READ_VIEW, rid, sid, edition_id, months[rid], secret=secret
            )
            body = json.dumps({"token": token}, separators=(",", ":"))
            part.add("POST", f"/stories/{slug}/read", cookies[rid], body)
    for f in (redirects, warm_redirects, *slices):
        f.close()
    return Fixture(redirects, warm_redirects, slices[0], slices[1:], len(reader_ids), len(stories))


# --- servers and load --------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        return None


_NO_REDIRECTS = urllib.request.build_opener(_KeepRedirects)


class Server:
    """gunicorn with WORKERS sync workers on a loopback port: the same flags for both."""

    def __init__(self, name: str, app_spec: str, env: dict[str, str], log: Path) -> None:
        self.name, self.port, self.log = name, free_port(), log
        url = env.get("DATABASE_URL")
        self.database = make_url(url).database or "" if url else ""
        gunicorn = VENV_BIN / "gunicorn"
        if not gunicorn.exists():
            raise BenchError(f"{gunicorn} not found: install the project (make install)")
        cmd = [
            str(gunicorn),
            "-w", str(WORKERS),
            "-k", "sync",
            "--threads", "1",  # gunicorn.conf.py's threads would turn sync into gthread
            "--bind", f"127.0.0.1:{self.port}",
            "--log-level", "warning",
            "--no-control-socket",
            app_spec,
        ]  # fmt: skip
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str, status: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                with _NO_REDIRECTS.open(self.url + path, timeout=5) as r:
                    pass
            except urllib.error.HTTPError as exc:
                if exc.code == status:
                    self._wait_workers_idle(deadline)
                    return
            except OSError:
                pass
            else:
                if r.status == status:
                    self._wait_workers_idle(deadline)
                    return
            time.sleep(0.2)
        self.stop()
        raise BenchError(f"the {self.name} server did not start:\n{self.log.read_text()[-3000:]}")

    def _wait_workers_idle(self, deadline: float) -> None:
        """The first worker to answer says nothing of the others, which import the app
        each on its own: wait until all WORKERS are there and none is busy importing."""
        last = -1.0
        while time.monotonic() < deadline:
            pids = self.pids()[1:]
            cpu = sum(proc_cpu(p) for p in pids)
            if len(pids) == WORKERS and cpu - last < 0.02:
                return
            last = cpu
            time.sleep(0.5)
        raise BenchError(f"the {self.name} server's workers did not settle")

    def pids(self) -> list[int]:
        """The master and its workers."""
        return process_tree(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


@dataclass
class Run:
    """One wrk run, or several added up."""

    name: str
    answered: int = 0  # responses with the expected status
    unexpected: int = 0
    last_unexpected: str = ""
    errors: int = 0  # connect, read and write errors and timeouts, as wrk counts them
    requests: int = 0
    seconds: float = 0.0
    p99s_ms: list[float] = field(default_factory=list)
    machine_ticks: int = 0
    idle_ticks: int = 0
    server_cpu: float = 0.0  # CPU seconds of the gunicorn master and workers
    postgres_cpu: float = 0.0  # CPU seconds of the backends serving the bench's database
    replayed: int = 0  # requests in the files replayed

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def p99_ms(self) -> float:
        return max(self.p99s_ms, default=0.0)

    @property
    def cpu_busy(self) -> float:
        return 1 - self.idle_ticks / max(1, self.machine_ticks)

    def add(self, other: Run) -> None:
        for name in (
            "answered", "unexpected", "errors", "requests", "seconds", "machine_ticks",
            "idle_ticks", "server_cpu", "postgres_cpu", "replayed",
        ):  # fmt: skip
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.last_unexpected = other.last_unexpected or self.last_unexpected
        self.p99s_ms += other.p99s_ms

    def check(self) -> None:
        if self.errors:
            raise BenchError(f"{self.name}: {self.errors} socket errors or timeouts")
        if self.unexpected:
            raise BenchError(
                f"{self.name}: {self.unexpected} responses with an unexpected status (last: "
                f"{self.last_unexpected}; see the server log): the figure would mean nothing"
            )

    def describe(self) -> str:
        return (
            f"{self.answered} answered in {self.seconds:.0f} s, p99 by round "
            f"{'/'.join(f'{p:.0f}' for p in self.p99s_ms)} ms; machine CPU "
            f"{self.cpu_busy:.0%} busy, gunicorn {self.server_cpu:.1f} CPU s "
            f"({self.server_cpu / max(1, self.answered) * 1e6:.0f} µs/request), its postgres "
            f"backends {self.postgres_cpu:.1f} CPU s "
            f"({self.postgres_cpu / max(1, self.answered) * 1e6:.0f} µs/request)"
        )


def wrk(
    name: str, server: Server, requests: Requests, expected: int, seconds: int, connections: int
) -> Run:
    cmd = [
        "wrk",
        "-t", str(WRK_THREADS),
        "-c", str(connections),
        "-d", f"{seconds}s",
        "--timeout", "5s",
        "--latency",
        "-s", str(BENCH_DIR / "clicks.lua"),
        server.url,
        "--", str(requests.path), str(WRK_THREADS), str(expected),
    ]  # fmt: skip
    pids = server.pids()
    pg_before = {pid: proc_cpu(pid) for pid in postgres_pids(server.database)}
    server_before = sum(proc_cpu(p) for p in pids)
    total_before, idle_before = machine_ticks()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if server.pids() != pids:
        raise BenchError(f"{name}: a {server.name} worker restarted during the run")
    total_after, idle_after = machine_ticks()
    server_cpu = sum(proc_cpu(p) for p in pids) - server_before
    pg_cpu = sum(proc_cpu(pid) - pg_before.get(pid, 0.0) for pid in postgres_pids(server.database))
    match = WRK_LINE.search(out.stdout)
    if out.returncode != 0 or match is None:
        raise BenchError(f"wrk failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    good, bad, last_bad, p99_us, count, duration_us, *errors = match.groups()
    run = Run(
        name,
        answered=int(good),
        unexpected=int(bad),
        last_unexpected=last_bad,
        errors=sum(int(n) for n in errors),
        requests=int(count),
        seconds=int(duration_us) / 1e6,
        p99s_ms=[int(p99_us) / 1000],
        machine_ticks=total_after - total_before,
        idle_ticks=idle_after - idle_before,
        server_cpu=server_cpu,
        postgres_cpu=pg_cpu,
        replayed=requests.count,
    )
    run.check()
    return run


def server_env(extra: dict[str, str]) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")
    env = {k: v for k, v in os.environ.items() if k in keep}
    env.update(extra)
    return env


# --- main ----------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", type=int, default=10_000, help="default: 10000")
    parser.add_argument("--rounds", type=int, default=3, help="default: 3")
    parser.add_argument("--seconds", type=int, default=5, help="per figure per round (5)")
    parser.add_argument("--connections", type=int, default=32, help="default: 32")
    parser.add_argument(
        "--database-url",
        default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_PG_URL),
        help=f"PostgreSQL, wiped (default: $BENCH_DATABASE_URL or {DEFAULT_PG_URL})",
    )
    parser.add_argument("--wipe", action="store_true", help="allow wiping --database-url")
    parser.add_argument("--keep", metavar="DIR", help="keep request files and server logs here")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise BenchError("wrk is not installed: apt-get install -y wrk")
    if not args.database_url.startswith("postgresql"):
        raise BenchError("bench/clicks.py measures PostgreSQL: pass a postgresql:// URL")

    secret = secrets.token_hex(32)
    conns, secs = args.connections, args.seconds
    with tempfile.TemporaryDirectory(prefix="bench-clicks-") as tmp_name:
        tmp = Path(args.keep) if args.keep else Path(tmp_name)
        tmp.mkdir(parents=True, exist_ok=True)
        with scratch_database(args.database_url, wipe=args.wipe) as url:
            started = time.perf_counter()
            app = setup_app(url, tmp, secret)
            edition_id = build_edition(app)
            fixture = make_fixture(app, secret, edition_id, args.readers, args.rounds, tmp)
            with app.extensions["db"].engine.begin() as connection:
                # What autovacuum does long before readers click (this machine's
                # PostgreSQL runs with it off): without statistics the planner takes the
                # 10,000 fresh deliveries for a handful of rows.
                connection.exec_driver_sql("ANALYZE")
            app.extensions["db"].dispose()
            say(
                f"clicks: setup {time.perf_counter() - started:.1f} s: {fixture.readers} "
                f"readers x {fixture.stories} stories on PostgreSQL; gunicorn -w {WORKERS} "
                f"sync; wrk -t {WRK_THREADS} -c {conns}; {args.rounds} rounds of {secs} s "
                "per figure"
            )
            app_env = server_env(
                {
                    "DATABASE_URL": url,
                    "SECRET_KEY": secret,
                    "BASE_URL": "http://127.0.0.1",
                    "NEWSLETTER_ENV": "development",
                    "MAIL_URL": "outbox:",
                    "NEWSLETTER_INSTANCE": str(tmp / "instance"),
                    "FREE_STORIES_PER_MONTH": str(FREE_STORIES_PER_MONTH),
                }
            )
            baseline_app = "bench.baseline_app:app"
            base = Server("baseline", baseline_app, server_env({}), tmp / "baseline.log")
            server = Server("app", "newsletter.app:create_app()", app_env, tmp / "app.log")
            baseline, redirect, read = Run("baseline"), Run("redirect"), Run("read confirmation")
            try:
                base.wait_ready("/r/ready", 302)
                server.wait_ready("/healthz", 200)
                wrk("warm-up", base, fixture.warm_redirects, 302, 2, conns)
                warm = wrk("warm-up", server, fixture.warm_redirects, 302, 2, conns)
                warm_reads = wrk("warm-up", server, fixture.warm_reads, 200, 1, conns)
                for n in range(args.rounds):
                    b = wrk("baseline", base, fixture.redirects, 302, secs, conns)
                    r = wrk("redirect", server, fixture.redirects, 302, secs, conns)
                    c = wrk("read confirmation", server, fixture.reads[n], 200, secs, conns)
                    say(
                        f"clicks: round {n + 1}: baseline {b.rps:.0f} req/s, redirect "
                        f"{r.rps:.0f} req/s, read confirmation {c.rps:.0f} req/s; p99 "
                        f"{b.p99_ms:.0f}/{r.p99_ms:.0f}/{c.p99_ms:.0f} ms"
                    )
                    baseline.add(b)
                    redirect.add(r)
                    read.add(c)
            finally:
                base.stop()
                server.stop()

            with app.extensions["db"].session() as session:
                clicks = session.scalar(select(func.count()).select_from(Click))
                reads = session.scalar(
                    select(func.count()).select_from(Read).where(Read.month != HISTORY_MONTH)
                )
            app.extensions["db"].dispose()

    # Every answered request committed its row. wrk may leave the last few in-flight
    # responses out of its count (the server still commits them): at most one per
    # connection and run.
    slack = conns * (2 + 2 * args.rounds)
    expected_clicks = warm.answered + redirect.answered
    if not expected_clicks <= clicks <= expected_clicks + slack:
        raise BenchError(f"{clicks} clicks logged for {expected_clicks} redirects answered")
    expected_reads = warm_reads.answered + read.answered
    if not expected_reads <= reads <= expected_reads + slack:
        raise BenchError(f"{reads} reads charged for {expected_reads} confirmations answered")
    if read.answered > read.replayed:
        raise BenchError("the confirmations wrapped around (re-reads): raise --readers")

    say(f"clicks: baseline (bare Flask redirect): {baseline.describe()}")
    say(f"clicks: redirect: {redirect.describe()}; {clicks} clicks logged (checked)")
    say(f"clicks: read confirmation: {read.describe()}; {reads} first reads charged (checked)")
    met = True
    for run, target in ((redirect, REDIRECT_TARGET), (read, READ_TARGET)):
        ok = run.rps / baseline.rps >= target and run.p99_ms <= P99_TARGET_MS
        met = met and ok
        say(
            f"clicks: {run.name} targets (ratio >= {target}, p99 <= {P99_TARGET_MS:.0f} ms): "
            + ("met" if ok else "MISSED")
        )
    say(f"clicks: baseline {baseline.rps:.0f} req/s, p99 {baseline.p99_ms:.0f} ms")
    for run in (redirect, read):
        say(
            f"clicks: {run.name} {run.rps:.0f} req/s vs baseline {baseline.rps:.0f} req/s, "
            f"ratio {run.rps / baseline.rps:.2f}, p99 {run.p99_ms:.0f} ms"
        )
    return 0 if met else 1


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
