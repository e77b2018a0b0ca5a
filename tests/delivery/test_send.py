"""`newsletter edition send --now` through a real SMTP server: who gets what, retries,
refusals, readers who leave before their turn, an unreachable relay, the rate limit."""

from __future__ import annotations

import time
from datetime import timedelta

import time_machine

from newsletter.db import utcnow
from newsletter.delivery.ledger import edition_for, enqueue_now
from newsletter.delivery.models import DeliveryState
from newsletter.delivery.sender import send_queued
from newsletter.editions.models import EditionStatus
from newsletter.readers.models import ReaderStatus, Suppression
from tests.delivery.conftest import (
    add_readers,
    add_stories,
    counts_in,
    deliveries,
    edition_dates,
    inbox,
    reader_row,
    tracked_links,
)
from tests.smtp_server import free_port


class TestSendNow:
    def test_each_confirmed_reader_gets_one_message_of_their_own(self, app, runner, smtp):
        readers = add_readers(app, 12)
        add_readers(app, 1, prefix="pending", status=ReaderStatus.PENDING)
        add_readers(app, 1, prefix="gone", status=ReaderStatus.UNSUBSCRIBED)
        add_readers(app, 1, prefix="bounced", status=ReaderStatus.BOUNCED)
        add_stories(app, utcnow())
        today = utcnow().date()

        result = runner.invoke(args=["edition", "send", "--now"])

        assert result.exit_code == 0, result.output
        assert f"edition of {today.isoformat()}: 12 readers added to the send" in result.stdout
        assert counts_in(result.stdout) == {
            "sent": 12,
            "retried": 0,
            "failed": 0,
            "suppressed": 0,
            "resent after crash": 0,
        }
        received = inbox(smtp)
        assert set(received) == {r.email for r in readers}  # nobody pending, gone or bounced
        rows = {row.reader_id: row for row in deliveries(app)}
        [(edition_id, edition_day)] = edition_dates(app).items()
        assert edition_day == today
        for reader in readers:
            [message] = received[reader.email]
            assert message["To"] == reader.email
            assert message["Message-ID"] == rows[reader.id].message_id
            assert message["List-Unsubscribe"].startswith("<http://localhost/unsubscribe/")
            claims = tracked_links(message)
            assert len({c.story_id for c in claims}) == 3  # every story, linked
            # Links that identify this reader (and this edition) only: no one else's token.
            assert {(c.reader_id, c.edition_id) for c in claims} == {(reader.id, edition_id)}
            assert rows[reader.id].state == DeliveryState.SENT
            assert rows[reader.id].attempts == 1

    def test_the_edition_is_marked_sent_and_a_rerun_sends_nothing(self, app, runner, smtp):
        add_readers(app, 3)
        add_stories(app, utcnow())
        assert runner.invoke(args=["edition", "send", "--now"]).exit_code == 0
        with app.app_context(), app.extensions["db"].session() as session:
            edition = edition_for(session, utcnow().date())
            assert edition.status == EditionStatus.SENT
            assert edition.send_started_at is not None and edition.send_finished_at is not None

        again = runner.invoke(args=["edition", "send", "--now"])

        assert again.exit_code == 0, again.output
        assert "nothing to send: every confirmed reader has had it" in again.stdout
        assert counts_in(again.stdout)["sent"] == 0
        assert len(smtp.received) == 3

    def test_a_reader_who_signs_up_later_gets_it_on_the_next_run(self, app, runner, smtp):
        add_readers(app, 2)
        add_stories(app, utcnow())
        runner.invoke(args=["edition", "send", "--now"])
        [late] = add_readers(app, 1, prefix="late")

        result = runner.invoke(args=["edition", "send", "--now"])

        assert "1 reader added to the send" in result.stdout
        assert len(inbox(smtp)[late.email]) == 1
        assert len(smtp.received) == 3


class TestRefusals:
    def test_temporary_refusal_is_retried_after_backoff_and_delivered_once(self, app, runner, smtp):
        [reader] = add_readers(app, 1)
        add_stories(app, utcnow())
        smtp.handler.data_replies.append("451 4.3.0 try later")

        result = runner.invoke(args=["edition", "send", "--now"])

        assert result.exit_code == 0, result.output
        assert counts_in(result.stdout)["retried"] == 1
        assert counts_in(result.stdout)["sent"] == 1
        assert len(inbox(smtp)[reader.email]) == 1
        [row] = deliveries(app)
        assert row.state == DeliveryState.SENT
        assert row.attempts == 2
        assert row.last_reply.startswith("451")

    def test_temporary_refusals_until_attempts_run_out_fail_the_row(self, app, runner, smtp):
        [reader] = add_readers(app, 1)
        add_stories(app, utcnow())
        app.config["SEND_MAX_ATTEMPTS"] = 3
        smtp.handler.data_replies.extend(["451 4.3.0 try later"] * 3)

        result = runner.invoke(args=["edition", "send", "--now"])

        assert result.exit_code == 0, result.output
        assert counts_in(result.stdout)["failed"] == 1
        assert counts_in(result.stdout)["retried"] == 2
        assert smtp.received == []
        [row] = deliveries(app)
        assert (row.state, row.attempts) == (DeliveryState.FAILED, 3)
        assert reader_row(app, reader.id).status == ReaderStatus.CONFIRMED  # not their fault

    def test_permanent_refusal_suppresses_and_bounces_that_reader_only(self, app, runner, smtp):
        readers = add_readers(app, 4)
        bad = readers[2]
        smtp.handler.rcpt_refusals[bad.email] = "550 5.1.1 no such user"
        add_stories(app, utcnow())

        result = runner.invoke(args=["edition", "send", "--now"])

        assert result.exit_code == 0, result.output
        assert counts_in(result.stdout)["suppressed"] == 1
        assert counts_in(result.stdout)["sent"] == 3
        assert set(inbox(smtp)) == {r.email for r in readers if r is not bad}
        row = next(r for r in deliveries(app) if r.reader_id == bad.id)
        assert row.state == DeliveryState.SUPPRESSED
        assert "550 5.1.1 no such user" in row.last_reply
        bounced = reader_row(app, bad.id)
        assert bounced.status == ReaderStatus.BOUNCED
        assert bounced.suppressed_at is not None
        assert "550 5.1.1" in bounced.suppressed_reason
        assert bounced.suppression == Suppression.BOUNCED  # what staff lift, whatever set it

        # They get no more mail: tomorrow's edition goes to the others only (tomorrow:
        # one edition a reader per local day, whoever sends it).
        later = utcnow() + timedelta(days=1)
        with time_machine.travel(later, tick=False):
            add_stories(app, later, prefix="next")
            runner.invoke(args=["edition", "send", "--now", "--date", later.date().isoformat()])
        assert len(smtp.received) == 6
        assert bad.email not in inbox(smtp)

    def test_reader_who_unsubscribes_before_their_turn_gets_nothing(self, app, smtp):
        readers = add_readers(app, 3)
        add_stories(app, utcnow())
        with app.app_context(), app.extensions["db"].session() as session:
            edition = edition_for(session, utcnow().date())
            enqueue_now(session, edition)
            edition_id = edition.id
        with app.extensions["db"].session() as session:
            session.get(type(readers[0]), readers[0].id).status = ReaderStatus.UNSUBSCRIBED

        report = send_queued(app, edition_id)

        assert (report.sent, report.suppressed) == (2, 1)
        assert readers[0].email not in inbox(smtp)
        row = next(r for r in deliveries(app) if r.reader_id == readers[0].id)
        assert row.state == DeliveryState.SUPPRESSED
        assert row.last_reply == "unsubscribed before sending"
        assert row.attempts == 0


class TestRelay:
    def test_unreachable_relay_stops_the_send_and_loses_nothing(self, app, runner, smtp):
        readers = add_readers(app, 3)
        add_stories(app, utcnow())
        app.config["MAIL_URL"] = f"smtp://127.0.0.1:{free_port()}"  # nothing listens

        result = runner.invoke(args=["edition", "send", "--now"])

        assert result.exit_code == 1
        assert "cannot connect to 127.0.0.1" in result.stderr
        assert "run this again once it is fixed" in result.stderr
        assert all((r.state, r.attempts) == (DeliveryState.QUEUED, 0) for r in deliveries(app))

        app.config["MAIL_URL"] = smtp.url
        again = runner.invoke(args=["edition", "send", "--now"])
        assert again.exit_code == 0, again.output
        assert set(inbox(smtp)) == {r.email for r in readers}

    def test_rate_limit_spaces_messages_across_connections(self, app, smtp):
        add_readers(app, 8)
        add_stories(app, utcnow())
        with app.app_context(), app.extensions["db"].session() as session:
            edition = edition_for(session, utcnow().date())
            enqueue_now(session, edition)
            edition_id = edition.id

        started = time.monotonic()
        report = send_queued(app, edition_id, rate_per_second=20, connections=4)
        elapsed = time.monotonic() - started

        assert report.sent == 8
        assert elapsed >= 7 / 20 * 0.9  # 8 messages at 20/s: 7 gaps of 50 ms at least
        assert len(smtp.received) == 8
