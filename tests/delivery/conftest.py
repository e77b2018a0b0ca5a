"""Delivery fixtures: readers and stories made directly, a slow SMTP sink, the CLI in a
subprocess (for kill -9), and reading back what each reader received."""

from __future__ import annotations

import asyncio
import os
import re
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import select

from newsletter.delivery.models import Delivery
from newsletter.editions.models import Edition
from newsletter.readers.models import Reader, ReaderStatus
from newsletter.stories.importing import import_stories
from newsletter.tokens import LinkClaims, LinkSigner
from tests.conftest import TEST_SECRET, _truncate_pg, make_app
from tests.smtp_server import Handler, SmtpServer

OUTLETS = [
    {"slug": "left-a", "name": "Left A", "bias": "left"},
    {"slug": "left-b", "name": "Left B", "bias": "lean_left"},
    {"slug": "center-a", "name": "Center A", "bias": "center"},
    {"slug": "right-a", "name": "Right A", "bias": "right"},
]


@pytest.fixture
def pg_app(request: pytest.FixtureRequest, tmp_path: Path, smtp: SmtpServer) -> Iterator[Flask]:
    """The app on PostgreSQL only, for what is about PostgreSQL (FOR UPDATE SKIP LOCKED)."""
    url = request.getfixturevalue("_pg_migrated")
    _truncate_pg(url)
    app = make_app(url, tmp_path, smtp)
    yield app
    app.extensions["db"].dispose()


@pytest.fixture
def app_settings() -> dict[str, Any]:
    # Small batches so a handful of readers already spans several claims and threads;
    # a tiny backoff so a retried message goes out within the test.
    return {"SEND_BATCH_SIZE": 5, "SEND_RETRY_BASE_SECONDS": 0.05, "SEND_RETRY_MAX_SECONDS": 0.2}


def add_readers(
    app: Flask,
    count: int,
    *,
    prefix: str = "reader",
    timezone: str = "UTC",
    hour: int = 6,
    status: ReaderStatus = ReaderStatus.CONFIRMED,
) -> list[Reader]:
    with app.extensions["db"].session() as session:
        readers = [
            Reader(
                email=f"{prefix}{i}@example.com",
                email_key=f"{prefix}{i}@example.com",
                status=status,
                timezone=timezone,
                delivery_hour=hour,
            )
            for i in range(count)
        ]
        session.add_all(readers)
    return readers


def add_stories(app: Flask, at: datetime, count: int = 3, *, prefix: str = "s") -> None:
    """`count` small stories published shortly before `at`, one a blindspot (no right)."""
    stories = []
    for n in range(count):
        published = (at - timedelta(minutes=30 + 10 * n)).isoformat()
        outlets = ["left-a", "left-b", "center-a"] if n == 0 else ["left-a", "center-a", "right-a"]
        stories.append(
            {
                "external_id": f"{prefix}{n}",
                "title": f"Story {prefix}{n}: the council votes on the budget",
                "overview": "The council voted on the budget after a long debate about schools.",
                "published_at": published,
                "articles": [
                    {
                        "outlet": slug,
                        "url": f"https://news.example/{prefix}{n}/{slug}",
                        "headline": f"Headline {prefix}{n} {slug}",
                        "published_at": published,
                    }
                    for slug in outlets
                ],
            }
        )
    with app.app_context(), app.extensions["db"].session() as session:
        report = import_stories(session, {"outlets": OUTLETS, "stories": stories}, now=at)
        assert not report.errors, report.errors


def deliveries(app: Flask) -> list[Delivery]:
    """Every ledger row, fresh from the database."""
    with app.extensions["db"].session() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.id)))


def edition_dates(app: Flask) -> dict[int, Any]:
    with app.extensions["db"].session() as session:
        return dict(session.execute(select(Edition.id, Edition.date)).all())


def reader_row(app: Flask, reader_id: int) -> Reader:
    with app.extensions["db"].session() as session:
        reader = session.get(Reader, reader_id)
        assert reader is not None
        return reader


def inbox(smtp: SmtpServer) -> dict[str, list[EmailMessage]]:
    """Messages received, by recipient address."""
    found: dict[str, list[EmailMessage]] = defaultdict(list)
    for received in smtp.received:
        for rcpt in received.rcpt_tos:
            found[rcpt.lower()].append(received.message)
    return dict(found)


_TRACKED = re.compile(r"http://localhost/r/([A-Za-z0-9_-]+)")


def tracked_links(message: EmailMessage) -> list[LinkClaims]:
    """What every tracked link in both parts of a message says (verified signatures)."""
    signer = LinkSigner(TEST_SECRET)
    claims = []
    for part in ("plain", "html"):
        body = message.get_body(preferencelist=(part,))
        assert body is not None
        claims += [signer.verify(token) for token in _TRACKED.findall(body.get_content())]
    return claims


def counts_in(output: str) -> dict[str, int]:
    """The final counts printed by `newsletter edition send`."""
    found = re.findall(
        r"^(sent|retried|failed|suppressed|resent after crash): (\d+)$", output, re.M
    )
    return {name: int(n) for name, n in found}


# --- a sink slow enough to kill a sender mid-way ------------------------------------------


@dataclass
class SlowHandler(Handler):
    """Takes `delay` per message; while `gate` is clear, holds every message at DATA
    (`held` counts them), so a test can line up several senders mid-send."""

    delay: float = 0.03
    gate: threading.Event = field(default_factory=threading.Event)
    held: int = 0

    def __post_init__(self) -> None:
        self.gate.set()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.held += 1
        while not self.gate.is_set():
            await asyncio.sleep(0.005)
        with self.lock:
            self.held -= 1
        await asyncio.sleep(self.delay)
        return await super().handle_DATA(server, session, envelope)


class SlowSmtpServer(SmtpServer):
    def __init__(self, delay: float) -> None:
        super().__init__()
        self.handler = SlowHandler(delay=delay)
        self.controller.handler = self.handler


@pytest.fixture
def slow_smtp() -> Iterator[SlowSmtpServer]:
    server = SlowSmtpServer(delay=0.03)
    server.start()
    yield server
    server.stop()


@dataclass
class Cli:
    """`newsletter ...` in its own process, configured like the test's app."""

    database_url: str
    tmp_path: Path
    mail_url: str
    env: dict[str, str] = field(default_factory=dict)

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        full_env = {
            **os.environ,
            "DATABASE_URL": self.database_url,
            "SECRET_KEY": TEST_SECRET,
            "BASE_URL": "http://localhost",
            "MAIL_URL": self.mail_url,
            "MAIL_FROM": "Both Sides Daily <daily@bothsides.test>",
            "NEWSLETTER_INSTANCE": str(self.tmp_path / "instance"),
            "SMTP_TIMEOUT": "30",
            "SEND_BATCH_SIZE": "5",
            "SEND_RETRY_BASE_SECONDS": "0.05",
            "SEND_RETRY_MAX_SECONDS": "0.2",
            **self.env,
            **env,
        }
        return subprocess.Popen(
            [sys.executable, "-m", "newsletter", *args],
            env=full_env,
            cwd=self.tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
