"""Scale-out, shown: two web processes (real gunicorn) and two workers (`python -m
newsletter worker`) against one PostgreSQL database. The scheduled send runs once per
reader (a real SMTP server counts), and clicks and reads through both web processes are
each counted once."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from sqlalchemy import create_engine, func, select
from sqlalchemy.engine import Engine

from newsletter.config import PROJECT_ROOT
from newsletter.delivery.models import Delivery
from newsletter.editions.models import Edition
from newsletter.readers.models import Reader, ReaderStatus
from newsletter.stories.importing import import_stories
from newsletter.tracking.models import Click, Read
from tests.conftest import TEST_SECRET
from tests.smtp_server import SmtpServer, free_port
from tests.tracking.conftest import NOW, OUTLETS, story_doc

READERS = 24
BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
_TRACKED = re.compile(r"https?://[^/\s\"<>]+(/r/[A-Za-z0-9_-]+)")
_VIEW_TOKEN = re.compile(r'data-view-token="([^"]+)"')


def wait_until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


class Processes:
    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env = tmp, env
        self.running: list[tuple[str, subprocess.Popen[bytes], Path]] = []

    def start(self, name: str, *args: str) -> None:
        log = self.tmp / f"{name}.log"
        proc = subprocess.Popen(
            [sys.executable, *args],
            env=self.env,
            cwd=PROJECT_ROOT,
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        self.running.append((name, proc, log))

    def log(self, name: str) -> str:
        return next(log for n, _, log in self.running if n == name).read_text(errors="replace")

    def stop(self) -> None:
        for _, proc, _ in self.running:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for _, proc, _ in self.running:
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


@pytest.fixture
def cluster(pg_url: str, tmp_path: Path, smtp: SmtpServer) -> Iterator[dict[str, Any]]:
    ports = [free_port(), free_port()]
    env = {
        **os.environ,
        "DATABASE_URL": pg_url,
        "SECRET_KEY": TEST_SECRET,
        "BASE_URL": f"http://127.0.0.1:{ports[0]}",
        "MAIL_URL": smtp.url,
        "MAIL_FROM": "Both Sides Daily <daily@bothsides.test>",
        "POSTAL_ADDRESS": "1 Test Street, Springfield",
        "NEWSLETTER_INSTANCE": str(tmp_path),
        "WORKER_TICK_SECONDS": "2",
        "CLICK_FLUSH_SECONDS": "0.2",
        "RATE_LIMIT_PER_IP": "1000/3600",
        "WEB_THREADS": "4",
    }
    procs = Processes(tmp_path, env)
    try:
        for n, port in enumerate(ports):
            procs.start(
                f"web{n}",
                "-m",
                "gunicorn",
                "--bind",
                f"127.0.0.1:{port}",
                "--workers",
                "1",
                "newsletter.app:create_app()",
            )
        webs = [f"http://127.0.0.1:{port}" for port in ports]
        for n, base in enumerate(webs):
            wait_until(lambda base=base: _healthy(base), 60, f"web{n} to answer")
        yield {"webs": webs, "procs": procs, "env": env}
    finally:
        procs.stop()


def _healthy(base: str) -> bool:
    try:
        return requests.get(f"{base}/healthz", timeout=5).status_code == 200
    except requests.RequestException:  # not listening yet, or still loading the app
        return False


def seed(engine: Engine) -> list[str]:
    from sqlalchemy.orm import Session

    addresses = [f"reader{n}@example.com" for n in range(READERS)]
    with Session(engine) as session:
        docs = [story_doc(n) for n in range(1, 6)]
        assert not import_stories(session, {"outlets": OUTLETS, "stories": docs}, now=NOW).rejected
        session.add_all(
            Reader(
                email=a,
                email_key=a,
                status=ReaderStatus.CONFIRMED,
                # Confirmed before today's delivery time, so today's edition is owed.
                confirmed_at=NOW - timedelta(days=2),
                delivery_hour=0,  # due as soon as a worker looks, whatever the hour
            )
            for a in addresses
        )
        session.commit()
    return addresses


def count(engine: Engine, stmt: Any) -> int:
    with engine.connect() as conn:
        return conn.execute(stmt).scalar_one()


def open_story(web: str, path: str) -> Callable[[], None]:
    """What a reader's browser does with a tracked link on one web process: follow it,
    show the story; returns what its script does once the page is visible."""
    browser = requests.Session()
    browser.headers["User-Agent"] = BROWSER_UA
    redirect = browser.get(web + path, allow_redirects=False, timeout=10)
    assert redirect.status_code == 302, redirect.text
    page = browser.get(web + redirect.headers["Location"], timeout=10)
    assert page.status_code == 200
    token = _VIEW_TOKEN.search(page.text).group(1)
    slug = redirect.headers["Location"].rsplit("/", 1)[1]

    def confirm() -> None:
        answer = browser.post(f"{web}/stories/{slug}/read", json={"token": token}, timeout=10)
        assert answer.status_code == 200, answer.text

    return confirm


def test_two_webs_and_two_workers_on_one_database(cluster, pg_url, smtp):
    engine = create_engine(pg_url)
    try:
        addresses = seed(engine)
        procs: Processes = cluster["procs"]
        for n in range(2):
            procs.start(f"worker{n}", "-m", "newsletter", "worker")

        # The scheduled send: every reader gets the edition exactly once.
        try:
            wait_until(lambda: len(smtp.received) >= READERS, 120, "every reader's edition")
        except AssertionError:
            logs = "\n".join(f"--- worker{n}\n{procs.log(f'worker{n}')[-3000:]}" for n in range(2))
            raise AssertionError(f"{len(smtp.received)} of {READERS} sent\n{logs}") from None
        time.sleep(5)  # two more ticks of both workers: nothing more may be sent
        per_reader = Counter(r for m in smtp.received for r in m.rcpt_tos)
        assert per_reader == dict.fromkeys(addresses, 1)
        assert count(engine, select(func.count()).select_from(Edition)) == 1
        assert count(engine, select(func.count()).select_from(Delivery)) == READERS
        assert count(engine, select(func.count()).where(Delivery.state == "sent")) == READERS
        for n in range(2):
            assert "worker started with jobs" in procs.log(f"worker{n}")

        # Clicks and reads through both web processes, each counted once.
        [message] = smtp.messages_to(addresses[0])
        html = message.get_body(("html",)).get_content()
        links = list(dict.fromkeys(_TRACKED.findall(html)))
        first, second = links[0], links[1]
        web_a, web_b = cluster["webs"]
        # The same story shown on both processes before either page reports the read.
        on_a, on_b = open_story(web_a, first), open_story(web_b, first)
        on_a()
        on_b()
        open_story(web_b, second)()
        wait_until(
            lambda: count(engine, select(func.count()).select_from(Click)) >= 3, 20, "clicks"
        )
        time.sleep(1)  # past both processes' flush interval: nothing is written twice
        assert count(engine, select(func.count()).select_from(Click)) == 3
        assert count(engine, select(func.count()).select_from(Read)) == 2
    finally:
        engine.dispose()
