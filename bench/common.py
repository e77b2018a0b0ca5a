"""What the benchmarks share: a scratch database, the app, a 10-story edition.

Benchmarks are scripts (see bench/README.md), not tests: each
prints one summary line per figure and runs its own baseline in the same run.
"""

from __future__ import annotations

import os
import secrets
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any

# `python bench/x.py` puts bench/ first on sys.path, where bench/webhooks.py would shadow
# the project's `webhooks` package (which the app imports): put the project root first.
# Every benchmark imports this module before anything of the project's.
ROOT = Path(__file__).resolve().parent.parent
if sys.path[:1] != [str(ROOT)]:
    sys.path.insert(0, str(ROOT))

from flask import Flask  # noqa: E402
from sqlalchemy import create_engine, inspect, text  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402
from sqlalchemy.exc import OperationalError  # noqa: E402

from newsletter.app import create_app  # noqa: E402
from newsletter.config import normalize_database_url  # noqa: E402
from newsletter.db import utcnow  # noqa: E402
from newsletter.migrate import upgrade  # noqa: E402

# The PostgreSQL database the benchmarks may wipe on this machine.
DEFAULT_PG_URL = "postgresql+psycopg://root@127.0.0.1:5432/test_h3"
# A table the benchmarks leave behind, so a later run knows the database is theirs.
MARKER_TABLE = "bench_scratch_marker"
# Realistic lengths: links and unsubscribe URLs are what per-reader bytes are made of.
BASE_URL = "https://www.bothsidesdaily.com"
MAIL_FROM = "Both Sides Daily <daily@bothsidesdaily.com>"


# --- CPU time of the processes a benchmark drives (Linux /proc) -------------------------

TICKS = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def postgres_pids(database: str) -> list[int]:
    """The PostgreSQL backends serving `database` (their process title names it)."""
    pids: list[int] = []
    if not database:
        return pids
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if title.startswith("postgres: ") and f" {database} " in title:
                pids.append(int(entry.name))
    return pids


def machine_ticks() -> tuple[int, int]:
    """(all, idle) CPU ticks of the machine so far."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(values), values[3] + values[4]


def process_tree(pid: int) -> list[int]:
    """A process and its children (a gunicorn master and its workers)."""
    pids = [pid]
    with suppress(OSError):
        pids += [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    return pids


class CpuUse:
    """The CPU seconds groups of processes use from now until `used()`, per group. A
    group is a function listing its processes, asked again at the end: PostgreSQL
    backends come and go."""

    def __init__(self, groups: dict[str, Callable[[], list[int]]]) -> None:
        self.groups = groups
        self.before = {name: {p: proc_cpu(p) for p in pids()} for name, pids in groups.items()}
        self.ticks = machine_ticks()

    def used(self) -> tuple[dict[str, float], float]:
        """CPU seconds per group, and the share of the machine's CPU that was busy."""
        (total, idle), (total0, idle0) = machine_ticks(), self.ticks
        total, idle = total - total0, idle - idle0
        return {
            name: sum(proc_cpu(p) - self.before[name].get(p, 0.0) for p in pids())
            for name, pids in self.groups.items()
        }, 1 - idle / max(1, total)


class BenchError(Exception):
    """A benchmark cannot run here; the message says what to do."""


def say(line: str) -> None:
    print(line, flush=True)


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms"


@contextmanager
def scratch_database(url: str | None, *, wipe: bool = False) -> Iterator[str]:
    """A freshly migrated database: a throwaway SQLite file when `url` is None, else
    `url` with its schema dropped and made again.

    A PostgreSQL database is only wiped when it is empty, was made by a benchmark before
    (marker table), or its name says it is for tests ("test"/"bench"), or with `wipe`.
    """
    if url is None:
        with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
            sqlite_url = f"sqlite:///{Path(tmp) / 'bench.db'}"
            upgrade(sqlite_url)
            yield sqlite_url
        return
    url = normalize_database_url(url)
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and Path(parsed.database).exists():
            if not wipe:
                raise BenchError(f"{parsed.database} exists: pass --wipe to let the bench reset it")
            Path(parsed.database).unlink()
        upgrade(url)
        yield url
        return
    _create_if_missing(url)
    engine = create_engine(url)
    try:
        tables = set(inspect(engine).get_table_names(schema="public"))
        name = (parsed.database or "").lower()
        scratch = not tables or MARKER_TABLE in tables or "test" in name or "bench" in name
        if not (scratch or wipe):
            raise BenchError(
                f"database {parsed.database!r} has tables and does not look like a scratch "
                "database: the bench drops its schema, so pass --wipe if that is what you want"
            )
        with engine.begin() as conn:
            conn.execute(text("DROP SCHEMA IF EXISTS public CASCADE"))
            conn.execute(text("CREATE SCHEMA public"))
        upgrade(url)
        with engine.begin() as conn:
            conn.execute(text(f"CREATE TABLE {MARKER_TABLE} (made_at timestamptz DEFAULT now())"))
    finally:
        engine.dispose()
    yield url


def _create_if_missing(url: str) -> None:
    """A fresh machine has no scratch databases yet: make the one named."""
    probe = create_engine(url)
    try:
        with probe.connect():
            return
    except OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    finally:
        probe.dispose()
    parsed = make_url(url)
    admin = create_engine(parsed.set(database="postgres"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{parsed.database}"'))
    finally:
        admin.dispose()


def bench_app(database_url: str, tmp_dir: str, **overrides: Any) -> Flask:
    settings: dict[str, Any] = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": secrets.token_hex(32),
        "BASE_URL": BASE_URL,
        "MAIL_FROM": MAIL_FROM,
        "POSTAL_ADDRESS": "1 Example Street, Springfield",
        "OUTBOX_DIR": str(Path(tmp_dir) / "outbox"),
    }
    settings.update(overrides)
    return create_app(settings)


@dataclass
class BuiltEdition:
    edition_id: int
    day: date
    stories: int
    load_seconds: float  # importing the demo stories (setup, not a figure)
    assemble_seconds: float  # all of `assemble`: selection, DB writes and rendering
    render_seconds: float  # of which Jinja + MJML + premailer for every variant
    variants: int
    render_cpu_seconds: float  # CPU time of that rendering: what a busy machine inflates less


def build_edition(app: Flask, now: datetime | None = None) -> BuiltEdition:
    """Load the demo stories and assemble today's edition (10 stories), timing the
    variant rendering apart from the database work around it.

    Rendering = the wall time of `render_variants` (Jinja, MJML, premailer, once per
    plan) minus the SQL it runs itself (template look-ups, the flush of the variants),
    which counts as database work, as does everything else `assemble` does.
    """
    from sqlalchemy import event

    from newsletter.editions import assembly, rendering
    from newsletter.stories.demo import load_demo

    now = now or utcnow()
    db = app.extensions["db"]
    started = time.perf_counter()
    with app.app_context(), db.session() as session:
        load_demo(session, now=now)
    load_seconds = time.perf_counter() - started

    sql = {"seconds": 0.0, "start": 0.0}

    def before_sql(*_: Any) -> None:
        sql["start"] = time.perf_counter()

    def after_sql(*_: Any) -> None:
        sql["seconds"] += time.perf_counter() - sql["start"]

    render = {"seconds": 0.0, "cpu": 0.0, "calls": 0}
    original = rendering.render_variants

    def timed_render_variants(*args: Any, **kwargs: Any) -> Any:
        sql_before, t0, cpu0 = sql["seconds"], time.perf_counter(), time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            render["seconds"] += time.perf_counter() - t0 - (sql["seconds"] - sql_before)
            render["cpu"] += time.thread_time() - cpu0  # (the SQL's client side included)
            render["calls"] += 1

    patched = [m for m in (assembly, rendering) if getattr(m, "render_variants", None)]
    for module in patched:
        module.render_variants = timed_render_variants  # type: ignore[attr-defined]
    event.listen(db.engine, "before_cursor_execute", before_sql)
    event.listen(db.engine, "after_cursor_execute", after_sql)
    try:
        started = time.perf_counter()
        with app.app_context(), db.session() as session:
            edition = assembly.assemble(session, now.date(), now=now).edition
            edition_id, day, stories = edition.id, edition.date, len(edition.stories)
            variants = len(edition.variants)
        assemble_seconds = time.perf_counter() - started
    finally:
        event.remove(db.engine, "before_cursor_execute", before_sql)
        event.remove(db.engine, "after_cursor_execute", after_sql)
        for module in patched:
            module.render_variants = original  # type: ignore[attr-defined]
    if render["calls"] != 1:
        raise BenchError("could not time render_variants: has assembly changed?")
    return BuiltEdition(
        edition_id,
        day,
        stories,
        load_seconds,
        assemble_seconds,
        render["seconds"],
        variants,
        render["cpu"],
    )
