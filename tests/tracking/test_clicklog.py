"""Clicks are buffered by the redirect and written in batches: none may be lost on the way."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import func, select

from newsletter.readers.models import Reader
from newsletter.tokens import LinkClaims
from newsletter.tracking import services
from newsletter.tracking.bots import truncate_ip
from newsletter.tracking.clicklog import ClickLog
from newsletter.tracking.models import Click
from tests.conftest import TEST_SECRET
from tests.tracking.conftest import clicks_written

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def click_count(session) -> int:  # type: ignore[no-untyped-def]
    session.rollback()
    return session.scalar(select(func.count()).select_from(Click))


@pytest.fixture
def app_settings():  # type: ignore[no-untyped-def]
    return {"CLICK_FLUSH_SECONDS": 0.05}


def test_the_writer_thread_stores_clicks_by_itself(client, sent_edition, session):
    for link in sent_edition.links["ann@example.com"]:
        assert client.get(link, headers={"User-Agent": BROWSER_UA}).status_code == 302
    deadline = time.monotonic() + 10
    while click_count(session) < 5 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert click_count(session) == 5


def test_a_click_of_a_reader_deleted_meanwhile_is_dropped_and_the_rest_kept(
    app, client, sent_edition, session
):
    log: ClickLog = app.extensions["click_log"]
    log.flush_seconds = 3600  # only the explicit flush below writes
    ann_link, bob_link = (sent_edition.links[e][0] for e in ("ann@example.com", "bob@example.com"))
    client.get(ann_link, headers={"User-Agent": BROWSER_UA})
    client.get(bob_link, headers={"User-Agent": BROWSER_UA})
    session.rollback()
    ann = session.scalar(select(Reader).where(Reader.email == "ann@example.com"))
    session.delete(session.scalar(select(Reader).where(Reader.email == "bob@example.com")))
    session.commit()
    clicks_written(app)
    session.rollback()
    assert [c.reader_id for c in session.scalars(select(Click))] == [ann.id]
    assert log.pending == 0


def test_a_failed_write_keeps_the_clicks_for_the_next_one(app, client, sent_edition, session):
    failures = []

    def flaky(db_session, clicks):  # type: ignore[no-untyped-def]
        if not failures:
            failures.append(len(clicks))
            raise ConnectionError("database went away")
        return services.write_clicks(db_session, clicks)

    log = ClickLog(app.extensions["db"].sessionmaker, flaky, flush_seconds=3600)
    links = sent_edition.links["ann@example.com"]
    with app.test_request_context():
        for link in links:
            claims = _claims(app, link)
            log.record(services.pending_click(claims, method="GET", user_agent=BROWSER_UA, ip=None))
    with pytest.raises(ConnectionError):
        log.flush()
    assert failures == [5] and log.pending == 5
    assert log.flush() == 5
    assert click_count(session) == 5
    log.close()


def test_the_thread_that_answered_the_redirect_writes_the_due_buffer(
    app, client, sent_edition, session
):
    """Once the buffer is due, the redirect's own thread writes it after the response
    has gone out; the background thread (woken every hour here) has no part in it."""
    log: ClickLog = app.extensions["click_log"]
    log.flush_seconds, log.batch_size = 3600, 3
    links = sent_edition.links["ann@example.com"]
    for link in links[:2]:
        client.get(link, headers={"User-Agent": BROWSER_UA}).close()
    assert log.pending == 2 and click_count(session) == 0  # not due yet
    client.get(links[2], headers={"User-Agent": BROWSER_UA}).close()  # a full batch
    assert log.pending == 0 and click_count(session) == 3


def test_in_a_threaded_worker_the_background_thread_writes_a_full_batch(app, sent_edition, session):
    """gthread workers (wsgi.multithread): no request thread writes; a full batch wakes
    the background thread (here long before its hourly round)."""
    log = ClickLog(
        app.extensions["db"].sessionmaker, services.write_clicks, flush_seconds=3600, batch_size=2
    )
    claims = _claims(app, sent_edition.links["ann@example.com"][0])
    for _ in range(2):
        log.record(
            services.pending_click(claims, method="GET", user_agent=BROWSER_UA, ip=None),
            threaded=True,
        )
    # The thread takes the batch (pending 0) before its write commits: wait for the rows.
    deadline = time.monotonic() + 10
    while click_count(session) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert log.pending == 0 and click_count(session) == 2
    log.close()


def test_a_failed_write_after_a_response_is_logged_and_retried_later(
    app, sent_edition, session, caplog
):
    calls = []

    def down(db_session, clicks):  # type: ignore[no-untyped-def]
        calls.append(len(clicks))
        raise ConnectionError("database went away")

    log = ClickLog(app.extensions["db"].sessionmaker, down, flush_seconds=3600, batch_size=1)
    claims = _claims(app, sent_edition.links["ann@example.com"][0])
    log.record(services.pending_click(claims, method="GET", user_agent=BROWSER_UA, ip=None))
    log.flush_if_due()  # never raises into the request that ran it
    assert calls == [1] and log.pending == 1
    assert "writing clicks failed (attempt 1)" in caplog.text
    log.flush_if_due()  # backing off: the next requests do not hammer the database
    assert calls == [1]
    log._write = services.write_clicks  # the database is back
    log._retry_at = 0.0  # the backoff has passed
    log.flush_if_due()
    assert log.pending == 0 and click_count(session) == 1
    log.close()


def test_a_full_buffer_drops_new_clicks_and_counts_them(app, sent_edition):
    log = ClickLog(
        app.extensions["db"].sessionmaker, services.write_clicks, flush_seconds=3600, max_pending=3
    )
    claims = _claims(app, sent_edition.links["ann@example.com"][0])
    for _ in range(5):
        log.record(services.pending_click(claims, method="GET", user_agent=BROWSER_UA, ip=None))
    assert (log.pending, log.dropped) == (3, 2)
    log.close()


def test_clicks_still_buffered_are_written_when_the_process_exits(
    database_url, sent_edition, session, tmp_path
):
    """What a gunicorn worker does on a graceful shutdown (SIGTERM, restart)."""
    script = tmp_path / "clicks_then_exit.py"
    script.write_text(
        f"""
from newsletter.app import create_app
app = create_app({{"DATABASE_URL": {database_url!r}, "SECRET_KEY": {TEST_SECRET!r},
                  "CLICK_FLUSH_SECONDS": 3600, "OUTBOX_DIR": {str(tmp_path)!r}}})
client = app.test_client()
for path in {[_path(link) for link in sent_edition.links["bob@example.com"]]!r}:
    assert client.get(path, headers={{"User-Agent": "Mozilla/5.0 (X11)"}}).status_code == 302
assert app.extensions["click_log"].pending == 5
"""
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert click_count(session) == 5


def test_closing_writes_the_buffer_and_ends_the_writer(app, client, sent_edition, session):
    """A test's app closes its click log before the next test empties the database: no
    click of this test may land in the next one's tables."""
    log: ClickLog = app.extensions["click_log"]
    log.flush_seconds = 3600
    client.get(sent_edition.links["ann@example.com"][0], headers={"User-Agent": BROWSER_UA})
    assert log.pending == 1
    log.close()
    assert log.pending == 0 and click_count(session) == 1
    assert log._thread is None  # the writer thread has ended


@pytest.mark.parametrize(
    ("ip", "prefix"),
    [
        ("203.0.113.77", "203.0.113.0/24"),
        ("10.0.0.1", "10.0.0.0/24"),
        ("2001:db8:1234:5678::1", "2001:db8:1234::/48"),
        ("256.1.1.1", None),
        ("01.2.3.4", None),
        ("not an address", None),
        (None, None),
    ],
)
def test_ip_addresses_are_truncated_to_their_network(ip, prefix):
    assert truncate_ip(ip) == prefix


def _path(link: str) -> str:
    return "/" + link.split("/", 3)[3]


def _claims(app, link: str) -> LinkClaims:  # type: ignore[no-untyped-def]
    from newsletter.tokens import LinkSigner

    return LinkSigner(app.config["SECRET_KEY"]).verify(link.rsplit("/", 1)[1])
