"""Fixtures: the app on SQLite and PostgreSQL, a real SMTP server, Chromium.

Every test that takes `app`, `client` or `session` runs twice: on SQLite and on PostgreSQL
(`TEST_DATABASE_URL`). Without that variable the PostgreSQL runs are skipped with a visible
reason; in CI (`CI=true`) they fail instead, since nothing may be skipped there.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import create_engine, text
from sqlalchemy.orm import Session

from newsletter.app import create_app
from newsletter.migrate import models_metadata, upgrade
from tests.smtp_server import SmtpServer

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}
PG_URL = os.environ.get("TEST_DATABASE_URL", "")
TEST_SECRET = "test-secret-key-that-is-long-enough-0123456789"


def require(condition: bool, reason: str) -> None:
    """Skip with a reason on a developer machine; fail in CI, where nothing may be skipped."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI must not skip: {reason}")
    pytest.skip(reason)


# --- databases ---------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture(scope="session")
def _pg_migrated() -> str:
    require(bool(PG_URL), "PostgreSQL tests need TEST_DATABASE_URL")
    from newsletter.config import normalize_database_url

    url = normalize_database_url(PG_URL)
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(text("DROP SCHEMA public CASCADE"))
        conn.execute(text("CREATE SCHEMA public"))
    engine.dispose()
    upgrade(url)
    return url


def _truncate_pg(url: str) -> None:
    engine = create_engine(url)
    tables = ", ".join(f'"{t.name}"' for t in models_metadata().sorted_tables)
    with engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def pg_url(_pg_migrated: str) -> str:
    """An emptied PostgreSQL database, for the tests of what only PostgreSQL does."""
    _truncate_pg(_pg_migrated)
    return _pg_migrated


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        path = tmp_path / "test.db"
        shutil.copy(request.getfixturevalue("_sqlite_template"), path)
        return f"sqlite:///{path}"
    url = request.getfixturevalue("_pg_migrated")
    _truncate_pg(url)
    return url


# --- mail --------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def _smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def smtp(_smtp_server: SmtpServer) -> Iterator[SmtpServer]:
    _smtp_server.reset()
    yield _smtp_server
    _smtp_server.reset()


# --- the app -----------------------------------------------------------------------------


def make_app(database_url: str, tmp_path: Path, smtp: SmtpServer, **overrides: Any) -> Flask:
    settings: dict[str, Any] = {
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_SECRET,
        "BASE_URL": "http://localhost",
        "MAIL_URL": smtp.url,
        "MAIL_FROM": "Both Sides Daily <daily@bothsides.test>",
        "POSTAL_ADDRESS": "1 Test Street, Springfield",
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "RATE_LIMIT_PER_IP": "1000/3600",
        "RATE_LIMIT_PER_ADDRESS": "1000/3600",
        "SMTP_TIMEOUT": 5,
        "TESTING": True,
    }
    settings.update(overrides)
    app = create_app(settings)
    return app


@pytest.fixture
def app_settings() -> dict[str, Any]:
    """Override in a test module (or parametrize) to change the app's configuration."""
    return {}


@pytest.fixture
def app(
    database_url: str, tmp_path: Path, smtp: SmtpServer, app_settings: dict[str, Any]
) -> Iterator[Flask]:
    app = make_app(database_url, tmp_path, smtp, **app_settings)
    yield app
    app.extensions["click_log"].close()
    app.extensions["db"].dispose()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def runner(app: Flask):  # type: ignore[no-untyped-def]
    return app.test_cli_runner()


@pytest.fixture
def session(app: Flask) -> Iterator[Session]:
    """A database session for arranging and checking rows.

    It holds no app context open: requests made by the test client meanwhile must get
    their own, as they do in production.
    """
    s = app.extensions["db"].sessionmaker()
    yield s
    s.close()


# --- helpers -----------------------------------------------------------------------------

_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
_LINK = re.compile(r"https?://[^\s<>\"']+")


def csrf_token(client: FlaskClient, path: str = "/") -> str:
    page = client.get(path).get_data(as_text=True)
    match = _CSRF.search(page)
    assert match, f"no CSRF token on {path}: {page[:300]}"
    return match.group(1)


def links_in(message: Any, contains: str) -> list[str]:
    """Links in the text part of an email that contain `contains`."""
    body = message.get_body(preferencelist=("plain",)).get_content()
    return [link for link in _LINK.findall(body) if contains in link]


# --- the browser -------------------------------------------------------------------------


@pytest.fixture(scope="session")
def chromium_path() -> str:
    path = shutil.which("chromium")
    require(
        path is not None, "browser tests need Debian's chromium package (apt-get install chromium)"
    )
    return path  # type: ignore[return-value]


@pytest.fixture
def browser_page(chromium_path: str) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=chromium_path,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        # A person's browser says "Chrome", not "HeadlessChrome" (which the app treats as
        # a link scanner's headless browser).
        version = browser.version.split(".")[0]
        context = browser.new_context(
            timezone_id="America/Los_Angeles",
            user_agent=(
                "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
                f"Chrome/{version}.0.0.0 Safari/537.36"
            ),
        )
        page = context.new_page()
        page.set_default_timeout(10_000)
        yield page
        context.close()
        browser.close()


class LiveServer:
    def __init__(self, app: Flask, port: int) -> None:
        from werkzeug.serving import make_server

        self.app = app
        self.url = f"http://127.0.0.1:{port}"
        self._server = make_server("127.0.0.1", port, app, threaded=True)
        import threading

        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(5)


@pytest.fixture
def live_server(
    database_url: str, tmp_path: Path, smtp: SmtpServer, app_settings: dict[str, Any]
) -> Iterator[LiveServer]:
    """The app served over real HTTP, with BASE_URL pointing at it (for Chromium)."""
    from tests.smtp_server import free_port

    port = free_port()
    app = make_app(
        database_url, tmp_path, smtp, BASE_URL=f"http://127.0.0.1:{port}", **app_settings
    )
    server = LiveServer(app, port)
    server.start()
    yield server
    server.stop()
    app.extensions["click_log"].close()
    app.extensions["db"].dispose()


# --- logs --------------------------------------------------------------------------------
# Every line the whole run makes the app log goes through the production formatter (JSON
# lines): each must parse, and at the end none may hold an address, a token, a session
# cookie or a Stripe secret (tests/test_logs.py checks the rules one by one).
_LEAK = re.compile(
    r"[A-Za-z0-9._%+-]{2,}@[A-Za-z0-9-]+\.[A-Za-z]"
    r"|\b(?:sk|rk)_(?:test|live)_|\bwhsec_"
    r"|\bbsd_session=(?!\[redacted\])"
    r"|/(?:signin|confirm|unsubscribe|r)/(?!\[token\])[A-Za-z0-9_.-]{8,}"
)


class _EveryLine(logging.Handler):
    def __init__(self) -> None:
        from newsletter import logs

        super().__init__(logging.INFO)
        main = logs.dict_config("json")["formatters"]["main"]
        self.setFormatter(logs.JsonLinesFormatter(**{k: v for k, v in main.items() if k != "()"}))
        self.addFilter(logs._Context())
        self.lines = 0
        self.problems: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        line = self.format(record)
        self.lines += 1
        try:
            json.loads(line)
        except ValueError:
            self.problems.append(f"not JSON: {line[:300]}")
        if _LEAK.search(line) and len(self.problems) < 50:
            self.problems.append(f"leaks: {line[:300]}")


_every_line = _EveryLine()


def pytest_configure(config: pytest.Config) -> None:
    root = logging.getLogger()
    root.addHandler(_every_line)
    if root.level > logging.INFO or root.level == logging.NOTSET:
        root.setLevel(logging.INFO)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    logging.getLogger().removeHandler(_every_line)
    if _every_line.problems:
        print(f"\n{len(_every_line.problems)} log lines break the logging rules:", file=sys.stderr)
        for problem in _every_line.problems:
            print("  " + problem, file=sys.stderr)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
