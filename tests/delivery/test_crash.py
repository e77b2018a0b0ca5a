"""Killed with SIGKILL in the middle of a send and run again: one edition per reader.

The one allowed exception: rows found `sending` (their message was on the wire at the
kill) are resent with the same Message-ID, flagged and counted. Also: two sender
processes sharing one send (FOR UPDATE SKIP LOCKED on PostgreSQL) never double up.
"""

from __future__ import annotations

import os
import re
import signal
import time

from newsletter.db import utcnow
from newsletter.delivery.ledger import edition_for
from newsletter.delivery.models import DeliveryState
from tests.delivery.conftest import Cli, add_readers, add_stories, counts_in, deliveries, inbox

SECONDS = 60


def wait_until(condition, timeout: float = SECONDS) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


def prepare(app, count: int) -> tuple[list, str]:  # type: ignore[no-untyped-def]
    readers = add_readers(app, count)
    add_stories(app, utcnow())
    with app.app_context(), app.extensions["db"].session() as session:
        day = edition_for(session, utcnow().date()).date.isoformat()
    return readers, day


def test_killed_send_resumes_with_exactly_one_edition_per_reader(
    app, runner, database_url, tmp_path, slow_smtp
):
    readers, day = prepare(app, 40)
    app.config["MAIL_URL"] = slow_smtp.url
    app.config["SEND_LEASE_SECONDS"] = 1
    cli = Cli(database_url, tmp_path, slow_smtp.url, {"SEND_LEASE_SECONDS": "1"})

    proc = cli.start("edition", "send", "--now", "--date", day)
    wait_until(lambda: len(slow_smtp.received) >= 8 or proc.poll() is not None)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=SECONDS)
    assert proc.returncode == -signal.SIGKILL
    at_kill = {row.reader_id: row.state for row in deliveries(app)}
    on_the_wire = {rid for rid, state in at_kill.items() if state == DeliveryState.SENDING}
    assert list(at_kill.values()).count(DeliveryState.SENT) < len(readers)  # killed mid-way

    result = runner.invoke(args=["edition", "send", "--now", "--date", day])

    assert result.exit_code == 0, result.output
    rows = {row.reader_id: row for row in deliveries(app)}
    assert all(row.state == DeliveryState.SENT for row in rows.values())
    resent = {rid for rid, row in rows.items() if row.resent_after_crash}
    assert resent == on_the_wire  # exactly the rows whose fate the kill left unknown
    assert counts_in(result.stdout)["resent after crash"] == len(resent)
    received = inbox(slow_smtp)
    for reader in readers:
        messages = received[reader.email]
        if reader.id in resent:
            # Possibly twice, but as the same message: a receiver can drop the twin.
            assert 1 <= len(messages) <= 2
            assert {m["Message-ID"] for m in messages} == {rows[reader.id].message_id}
        else:
            assert len(messages) == 1, reader.email


def test_two_sender_processes_share_one_send_on_postgresql(pg_app, tmp_path, slow_smtp):
    readers, day = prepare(pg_app, 60)
    url = pg_app.config["DATABASE_URL"]
    cli = Cli(url, tmp_path, slow_smtp.url, {"SEND_CONNECTIONS": "2"})
    handler = slow_smtp.handler
    handler.gate.clear()  # hold every message at DATA until both senders are in

    first, second = (cli.start("edition", "send", "--now", "--date", day) for _ in range(2))
    # Two connections each: four messages held means both processes are sending.
    wait_until(lambda: handler.held == 4 or None not in (first.poll(), second.poll()))
    handler.gate.set()
    outputs = [p.communicate(timeout=SECONDS) for p in (first, second)]

    assert [p.returncode for p in (first, second)] == [0, 0], outputs
    sent = [counts_in(out)["sent"] for out, _ in outputs]
    assert sum(sent) == len(readers)
    assert min(sent) > 0, sent
    received = inbox(slow_smtp)
    assert {r.email: len(received.get(r.email, [])) for r in readers} == {
        r.email: 1 for r in readers
    }
    # The audience was made once: what one process added, the other found there.
    added = [int(re.search(r": (\d+) readers? added", out).group(1)) for out, _ in outputs]
    assert sum(added) == len(readers)
