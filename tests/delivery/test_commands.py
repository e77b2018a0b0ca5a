"""`newsletter edition assemble` and `newsletter edition send`: what staff see, exit codes."""

from __future__ import annotations

import re
import threading
import time
from datetime import timedelta

from sqlalchemy import select

from newsletter.db import utcnow
from newsletter.delivery.ledger import edition_for, enqueue_now
from newsletter.editions.models import Edition
from tests.delivery.conftest import (
    add_readers,
    add_stories,
    counts_in,
    deliveries,
    edition_dates,
)


class TestAssemble:
    def test_prints_the_stories_in_order_with_sources_blindspots_and_reading_time(
        self, app, runner
    ):
        add_stories(app, utcnow())
        today = utcnow().date()

        result = runner.invoke(args=["edition", "assemble"])

        assert result.exit_code == 0, result.output
        out = result.stdout
        assert f"Edition of {today.isoformat()} (assembled): 3 stories" in out
        with app.extensions["db"].session() as session:
            edition = session.scalar(select(Edition).where(Edition.date == today))
            titles = [entry.story.title for entry in edition.stories]
            reading = divmod(edition.reading_seconds, 60)
        numbered = re.findall(r"^\s+(\d+)\. (.+)$", out, re.M)
        assert numbered == [(str(i + 1), title) for i, title in enumerate(titles)]
        # Story s0 is covered by two left outlets and one center: the right's blindspot.
        assert re.search(r"3 outlets · Left 67% · Center 33% · Right 0% · blindspot: right", out)
        assert len(re.findall(r"3 outlets · Left 34% · Center 33% · Right 33%$", out, re.M)) == 2
        assert f"Reading time: {reading[0]} min {reading[1]:02d} s" in out

    def test_an_edition_being_sent_is_left_as_it_was(self, app, runner):
        add_readers(app, 1)
        add_stories(app, utcnow())
        assert runner.invoke(args=["edition", "send", "--now"]).exit_code == 0
        add_stories(app, utcnow(), prefix="late")  # news that arrives after the send began

        result = runner.invoke(args=["edition", "assemble"])

        assert result.exit_code == 0, result.output
        assert "Already being sent: the edition was left as it was." in result.stdout
        assert "(sent): 3 stories" in result.stdout
        assert "late" not in result.stdout

    def test_no_stories_is_an_error_with_a_reason(self, app, runner):
        result = runner.invoke(args=["edition", "assemble", "--date", "2026-03-01"])

        assert result.exit_code == 1
        assert "No stories to send for 2026-03-01: import some first." in result.stderr
        assert edition_dates(app) == {}

    def test_a_bad_date_is_an_error(self, app, runner):
        result = runner.invoke(args=["edition", "assemble", "--date", "01/03/2026"])

        assert result.exit_code == 1
        assert "--date must be a date as YYYY-MM-DD, got '01/03/2026'" in result.stderr


class TestSend:
    def test_send_now_without_stories_sends_nothing_and_says_why(self, app, runner, smtp):
        add_readers(app, 2)

        result = runner.invoke(args=["edition", "send", "--now"])

        assert result.exit_code == 1
        assert "No stories to send for" in result.stderr
        assert smtp.received == []

    def test_scheduled_send_without_stories_says_who_is_waiting(self, app, runner, smtp):
        add_readers(app, 2, timezone="UTC", hour=0)  # due all day

        result = runner.invoke(args=["edition", "send"])

        assert result.exit_code == 1
        today = utcnow().date().isoformat()
        assert f"nothing sent for {today} (UTC): readers are due, but No stories" in result.stderr
        assert smtp.received == []

    def test_scheduled_send_reports_each_local_date_and_the_counts(self, app, runner, smtp):
        add_readers(app, 2, timezone="UTC", hour=0)
        add_stories(app, utcnow())

        result = runner.invoke(args=["edition", "send"])

        assert result.exit_code == 0, result.output
        assert f"{utcnow().date().isoformat()} (UTC): 2 readers queued" in result.stdout
        assert counts_in(result.stdout)["sent"] == 2
        assert "sending: 2/2 done · sent 2" in result.stderr  # the progress line
        assert len(smtp.received) == 2

    def test_send_now_for_another_date_and_a_bad_date(self, app, runner, smtp):
        add_readers(app, 1)
        add_stories(app, utcnow())
        tomorrow = (utcnow() + timedelta(days=1)).date().isoformat()

        bad = runner.invoke(args=["edition", "send", "--now", "--date", "tomorrow"])
        assert bad.exit_code == 1
        assert "--date must be a date as YYYY-MM-DD" in bad.stderr

        good = runner.invoke(args=["edition", "send", "--now", "--date", tomorrow])
        assert good.exit_code == 0, good.output
        assert f"edition of {tomorrow}: 1 reader added" in good.stdout
        assert [d.isoformat() for d in edition_dates(app).values()] == [tomorrow]


def pause(app, paused: bool = True) -> int:  # type: ignore[no-untyped-def]
    """Pause (or resume) today's edition as staff do; returns its id."""
    with app.extensions["db"].session() as session:
        edition = session.scalar(select(Edition).where(Edition.date == utcnow().date()))
        edition.paused = paused
        return edition.id


class TestPausedEdition:
    def test_send_now_on_a_paused_edition_says_so_and_how_to_resume(self, app, runner, smtp):
        add_readers(app, 3)
        add_stories(app, utcnow())
        with app.app_context(), app.extensions["db"].session() as session:
            enqueue_now(session, edition_for(session, utcnow().date()))  # a send under way
        edition_id = pause(app)
        add_readers(app, 1, prefix="late")

        result = runner.invoke(args=["edition", "send", "--now"])

        assert result.exit_code == 1
        today = utcnow().date().isoformat()
        assert (
            f"error: the edition of {today} is paused (3 readers waiting); resume it with "
            f"Resume sending at http://localhost/admin/editions/{edition_id}, then run this "
            "again" in result.stderr
        )
        assert "sent: 0" not in result.stdout
        assert smtp.received == []
        assert len(deliveries(app)) == 3  # nobody added to a paused send either

        pause(app, False)
        resumed = runner.invoke(args=["edition", "send", "--now"])

        assert resumed.exit_code == 0, resumed.output
        assert "1 reader added to the send" in resumed.stdout
        assert counts_in(resumed.stdout)["sent"] == 4

    def test_a_pause_during_send_now_reports_what_went_and_what_waits(self, app, runner, slow_smtp):
        add_readers(app, 12)
        add_stories(app, utcnow())
        app.config.update(MAIL_URL=slow_smtp.url, SEND_CONNECTIONS=1, SEND_BATCH_SIZE=5)
        slow_smtp.handler.gate.clear()  # hold the first message at DATA

        def staff_pauses() -> None:
            deadline = time.monotonic() + 10
            while slow_smtp.handler.held < 1 and time.monotonic() < deadline:
                time.sleep(0.01)
            pause(app)
            slow_smtp.handler.gate.set()

        staff = threading.Thread(target=staff_pauses)
        staff.start()
        result = runner.invoke(args=["edition", "send", "--now"])
        staff.join()

        assert result.exit_code == 1
        # The batch already in the sender's hands finishes; the rest waits.
        assert counts_in(result.stdout)["sent"] == 5
        assert "is paused (7 readers waiting); resume it with Resume sending" in result.stderr
        assert len(slow_smtp.received) == 5

    def test_a_scheduled_send_says_which_paused_editions_hold_readers(self, app, runner, smtp):
        add_readers(app, 2, timezone="UTC", hour=0)  # due all day
        add_stories(app, utcnow())
        with app.app_context(), app.extensions["db"].session() as session:
            enqueue_now(session, edition_for(session, utcnow().date()))
        pause(app)

        result = runner.invoke(args=["edition", "send"])

        assert result.exit_code == 1
        assert counts_in(result.stdout)["sent"] == 0
        today = utcnow().date().isoformat()
        assert f"error: the edition of {today} is paused (2 readers waiting)" in result.stderr
        assert smtp.received == []
