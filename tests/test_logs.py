"""One logging set-up: JSON lines in production, a request id on every web line, the job
name on every job line, and nothing secret in any line."""

from __future__ import annotations

import io
import json
import logging
import os
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from newsletter import logs
from newsletter.tokens import Purpose, make_compact


@pytest.fixture
def json_lines():  # type: ignore[no-untyped-def]
    """The root logger writing JSON lines (as with LOG_FORMAT=json) into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    config = logs.dict_config("json")
    handler.setFormatter(
        logs.JsonLinesFormatter(
            **{k: v for k, v in config["formatters"]["main"].items() if k != "()"}
        )
    )
    handler.addFilter(logs._Context())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield lambda: [json.loads(line) for line in stream.getvalue().splitlines()]
    root.removeHandler(handler)
    root.setLevel(old_level)


def test_every_web_line_names_its_request_and_the_answer_returns_it(client, json_lines):  # type: ignore[no-untyped-def]
    response = client.post("/signup", data={"email": "x"})  # no CSRF token: logged refusal or not
    rid = response.headers["X-Request-ID"]
    assert len(rid) == 32
    logging.getLogger("newsletter.test").info("outside any request")
    again = client.get("/healthz")
    assert again.headers["X-Request-ID"] != rid
    lines = json_lines()
    assert all(set(line) >= {"time", "level", "logger", "message"} for line in lines)
    assert "request_id" not in lines[-1]  # the line written between requests


def test_a_request_id_is_taken_from_a_trusted_proxy_only(database_url, tmp_path, smtp, monkeypatch):  # type: ignore[no-untyped-def]
    from tests.conftest import make_app

    for trusted, expected in (("1", "edge-42.abc"), ("0", None)):
        monkeypatch.setenv("TRUSTED_PROXIES", trusted)
        app = make_app(database_url, tmp_path, smtp)
        try:
            client = app.test_client()
            rid = client.get("/healthz", headers={"X-Request-ID": "edge-42.abc"}).headers[
                "X-Request-ID"
            ]
            assert (rid == "edge-42.abc") == (expected is not None)
            hostile = client.get("/healthz", headers={"X-Request-ID": "a b;<script>" + "x" * 200})
            assert hostile.headers["X-Request-ID"].isalnum()
        finally:
            app.extensions["click_log"].close()
            app.extensions["db"].dispose()


def test_lines_written_inside_a_request_carry_its_id(app, json_lines):  # type: ignore[no-untyped-def]
    @app.get("/_log_something")
    def log_something():  # type: ignore[no-untyped-def]
        logging.getLogger("newsletter.test").warning("inside %s", "the request")
        return "ok"

    rid = app.test_client().get("/_log_something").headers["X-Request-ID"]
    [line] = [line for line in json_lines() if line["message"] == "inside the request"]
    assert line["request_id"] == rid and line["level"] == "WARNING"


def test_a_job_run_logs_its_name_and_outcome(json_lines):  # type: ignore[no-untyped-def]
    from jobs.tasks import SKIPPED, scheduled

    @scheduled
    def nightly_test_job():  # type: ignore[no-untyped-def]
        logging.getLogger("newsletter.test").info("working")
        return SKIPPED

    @scheduled
    def broken_test_job():  # type: ignore[no-untyped-def]
        raise RuntimeError("no database")

    nightly_test_job()
    with pytest.raises(RuntimeError):
        broken_test_job()
    lines = json_lines()
    working = next(line for line in lines if line["message"] == "working")
    assert working["job"] == "nightly_test_job"
    messages = [line["message"] for line in lines if line.get("job")]
    assert any(m.startswith("job nightly_test_job: skipped in ") for m in messages)
    assert any(m.startswith("job broken_test_job: failed in ") for m in messages)
    failed = next(line for line in lines if line["message"] == "job broken_test_job failed")
    assert "RuntimeError: no database" in failed["exc_info"]


def test_secrets_tokens_and_addresses_never_reach_a_line(app, json_lines):  # type: ignore[no-untyped-def]
    with app.app_context():
        token = make_compact(Purpose.READING, 12, 34)
    log = logging.getLogger("newsletter.test")
    log.info("signin link http://localhost/signin/%s for %s", token, "Ann.Reader@example.com")
    log.info("key sk_live_51Habcdef and whsec_AbC123= cookie bsd_session=eyJfZnJl.Z0x.abc")
    log.info("Authorization: Bearer abc.def-123 ?token=zzz&x=1")
    try:
        raise ValueError("bob@example.org is not allowed")
    except ValueError:
        log.exception("refused")
    text = json.dumps(json_lines())
    for secret in (
        token,
        "Ann.Reader@",
        "sk_live_51Habcdef",
        "whsec_AbC123",
        "eyJfZnJl",
        "abc.def-123",
        "zzz",
        "bob@",
    ):
        assert secret not in text
    assert "A***@example.com" in text and "b***@example.org" in text


_local = st.text(string.ascii_letters + string.digits + "._+-", min_size=2, max_size=30).filter(
    lambda s: s[0].isalnum()
)


@given(
    before=st.text(max_size=40),
    local=_local,
    domain=st.from_regex(r"[a-z]{1,10}\.(com|org|co\.uk)", fullmatch=True),
    after=st.text(max_size=40),
)
def test_no_full_address_survives_redaction(before, local, domain, after):  # type: ignore[no-untyped-def]
    address = f"{local}@{domain}"
    out = logs.redact(f"{before} {address} {after}")
    assert address not in out
    assert logs.redact(out) == out  # idempotent


@given(st.text(max_size=200))
def test_redaction_never_fails_on_any_text(text):  # type: ignore[no-untyped-def]
    assert isinstance(logs.redact(text), str)


def test_an_unknown_log_format_is_refused():
    from newsletter.config import Config, ConfigError

    with pytest.raises(ConfigError, match="LOG_FORMAT"):
        Config.from_env({"LOG_FORMAT": "xml"})


def test_errors_reach_sentry_without_personal_data(tmp_path):  # type: ignore[no-untyped-def]
    """A real local HTTP server as the Sentry ingest endpoint; the app in another process
    (sentry-sdk's set-up is process-wide)."""
    import gzip
    import subprocess
    import sys
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    from pathlib import Path

    received: list[bytes] = []

    class Ingest(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if self.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
            received.append(body)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Ingest)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    dsn = f"http://publickey@127.0.0.1:{server.server_address[1]}/7"
    script = tmp_path / "crash.py"
    script.write_text(
        f"""
import sentry_sdk
from newsletter.app import create_app
app = create_app({{"DATABASE_URL": "sqlite:///{tmp_path}/x.db", "SECRET_KEY": "s" * 40,
                  "SENTRY_DSN": {dsn!r}, "OUTBOX_DIR": {str(tmp_path)!r}}})
@app.get("/crash")
def crash():
    raise RuntimeError("cannot email carol.reader@example.com")
response = app.test_client().get("/crash", headers={{"Cookie": "bsd_session=secretcookie"}})
assert response.status_code == 500
sentry_sdk.flush(10)
"""
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    server.shutdown()
    assert done.returncode == 0, done.stderr
    report = b"".join(received)
    assert b"RuntimeError" in report and b"c***@example.com" in report
    assert b"carol.reader" not in report and b"secretcookie" not in report
