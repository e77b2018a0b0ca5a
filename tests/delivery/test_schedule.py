"""Scheduled delivery (`deliver_due`, the worker's job every minute): each reader gets
their local date's edition once their local delivery hour has come, across time zones,
DST changes and downtime. Time is moved with time-machine."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import time_machine
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from newsletter.delivery.models import Delivery
from newsletter.delivery.services import DueRun, assemble_ahead, deliver_due
from tests.delivery.conftest import add_readers, add_stories, deliveries, edition_dates, inbox

NEW_YORK = ZoneInfo("America/New_York")


def run_at(app, when: datetime) -> DueRun:  # type: ignore[no-untyped-def]
    with time_machine.travel(when, tick=False), app.app_context():
        return deliver_due(app)


def editions_received(app, smtp) -> dict[str, list[date]]:  # type: ignore[no-untyped-def]
    """Per reader address: the dates of the editions they received, checked against the
    ledger (one message per sent row, nothing else)."""
    dates = edition_dates(app)
    emails = {r.reader_id: r.reader.email for r in _rows_with_readers(app)}
    found: dict[str, list[date]] = {}
    for row in deliveries(app):
        found.setdefault(emails[row.reader_id], []).append(dates[row.edition_id])
    received = inbox(smtp)
    assert {k: len(v) for k, v in received.items()} == {k: len(v) for k, v in found.items()}
    return found


def _rows_with_readers(app):  # type: ignore[no-untyped-def]
    with app.extensions["db"].session() as session:
        return list(session.scalars(select(Delivery).options(joinedload(Delivery.reader))))


def first_delivery_times(app, smtp, readers, start, steps, every) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Run the job every `every` from `start`; when each reader first got mail, in New
    York local time."""
    seen: dict[str, str] = {}
    for i in range(steps):
        when = start + i * every
        run_at(app, when)
        for reader in readers:
            if reader.email in inbox(smtp) and reader.email not in seen:
                seen[reader.email] = when.astimezone(NEW_YORK).strftime("%H:%M %Z")
    return seen


class TestLocalTime:
    def test_auckland_and_los_angeles_get_their_own_dates_edition_at_7(self, app, smtp):
        [nz] = add_readers(app, 1, prefix="nz", timezone="Pacific/Auckland", hour=7)
        [la] = add_readers(app, 1, prefix="la", timezone="America/Los_Angeles", hour=7)
        add_stories(app, datetime(2026, 6, 10, 10, tzinfo=UTC), prefix="a")

        run_at(app, datetime(2026, 6, 10, 13, 59, tzinfo=UTC))  # LA 06:59, Auckland 01:59
        assert smtp.received == []
        run_at(app, datetime(2026, 6, 10, 14, 0, tzinfo=UTC))  # LA 07:00 on June 10
        assert editions_received(app, smtp) == {la.email: [date(2026, 6, 10)]}

        add_stories(app, datetime(2026, 6, 10, 16, tzinfo=UTC), prefix="b")
        run_at(app, datetime(2026, 6, 10, 18, 59, tzinfo=UTC))  # Auckland 06:59, June 11
        assert nz.email not in inbox(smtp)
        run_at(app, datetime(2026, 6, 10, 19, 0, tzinfo=UTC))  # Auckland 07:00, June 11
        run_at(app, datetime(2026, 6, 10, 19, 30, tzinfo=UTC))

        assert editions_received(app, smtp) == {
            la.email: [date(2026, 6, 10)],
            nz.email: [date(2026, 6, 11)],  # a day ahead of UTC, and of Los Angeles
        }
        subjects = {m["To"]: m["Subject"] for msgs in inbox(smtp).values() for m in msgs}
        assert subjects[la.email] != subjects[nz.email]  # two editions, two stories sets

    def test_spring_forward_reader_at_2am_gets_it_once_at_3am(self, app, smtp):
        readers = [
            add_readers(app, 1, prefix=f"h{hour}-", timezone="America/New_York", hour=hour)[0]
            for hour in (1, 2, 3)
        ]
        add_stories(app, datetime(2026, 3, 8, 4, tzinfo=UTC))

        # 2026-03-08 in New York: 01:59 EST is followed by 03:00 EDT; 02:00 never happens.
        seen = first_delivery_times(
            app, smtp, readers, datetime(2026, 3, 8, 5, 0, tzinfo=UTC), 9, timedelta(minutes=30)
        )

        assert seen == {
            readers[0].email: "01:00 EST",
            readers[1].email: "03:00 EDT",
            readers[2].email: "03:00 EDT",
        }
        assert editions_received(app, smtp) == {r.email: [date(2026, 3, 8)] for r in readers}

    def test_fall_back_repeated_hour_does_not_send_twice(self, app, smtp):
        readers = [
            add_readers(app, 1, prefix=f"h{hour}-", timezone="America/New_York", hour=hour)[0]
            for hour in (1, 2)
        ]
        add_stories(app, datetime(2026, 11, 1, 3, tzinfo=UTC))

        # 2026-11-01 in New York: 01:00-01:59 happens twice (EDT, then EST).
        seen = first_delivery_times(
            app, smtp, readers, datetime(2026, 11, 1, 4, 0, tzinfo=UTC), 9, timedelta(minutes=30)
        )

        assert seen == {readers[0].email: "01:00 EDT", readers[1].email: "02:00 EST"}
        assert editions_received(app, smtp) == {r.email: [date(2026, 11, 1)] for r in readers}


class TestCatchUp:
    def test_after_downtime_every_missed_hour_is_sent_once(self, app, smtp):
        early = [
            add_readers(app, 1, prefix=f"h{hour}-", timezone="Europe/London", hour=hour)[0]
            for hour in (5, 6, 7, 8)
        ]
        [later] = add_readers(app, 1, prefix="h10-", timezone="Europe/London", hour=10)
        add_stories(app, datetime(2026, 1, 15, 3, tzinfo=UTC))

        # The worker was down from before 05:00 until 09:10 (London is on GMT in January).
        first = run_at(app, datetime(2026, 1, 15, 9, 10, tzinfo=UTC))
        assert [(d.day, d.queued) for d in first.dates] == [(date(2026, 1, 15), 4)]
        assert first.report.sent == 4
        assert set(inbox(smtp)) == {r.email for r in early}

        again = run_at(app, datetime(2026, 1, 15, 9, 11, tzinfo=UTC))
        assert again.report.sent == 0
        run_at(app, datetime(2026, 1, 15, 10, 0, tzinfo=UTC))

        assert editions_received(app, smtp) == {
            r.email: [date(2026, 1, 15)] for r in [*early, later]
        }

    def test_no_stories_means_nothing_sent_and_a_reason(self, app, smtp):
        [reader] = add_readers(app, 1, timezone="UTC", hour=6)

        run = run_at(app, datetime(2026, 1, 15, 7, tzinfo=UTC))

        assert [d.no_stories for d in run.no_stories] == [
            "No stories to send for 2026-01-15: import some first."
        ]
        assert smtp.received == [] and edition_dates(app) == {}

        add_stories(app, datetime(2026, 1, 15, 7, 30, tzinfo=UTC))
        run_at(app, datetime(2026, 1, 15, 8, tzinfo=UTC))
        assert editions_received(app, smtp) == {reader.email: [date(2026, 1, 15)]}


class TestAssembleAhead:
    def test_the_next_local_date_is_assembled_within_two_hours_of_its_start(self, app, smtp):
        add_readers(app, 1, timezone="Pacific/Auckland", hour=7)
        add_stories(app, datetime(2026, 6, 10, 8, tzinfo=UTC))

        # 09:30 UTC is 21:30 in Auckland: June 11 starts in 2.5 hours, not yet.
        at = datetime(2026, 6, 10, 9, 30, tzinfo=UTC)
        with time_machine.travel(at, tick=False), app.app_context():
            assert assemble_ahead(app) == []
        # 10:30 UTC is 22:30: June 11 starts within two hours.
        at = datetime(2026, 6, 10, 10, 30, tzinfo=UTC)
        with time_machine.travel(at, tick=False), app.app_context():
            [result] = assemble_ahead(app)
            assert (result.day, result.outcome) == (date(2026, 6, 11), "assembled")
            [again] = assemble_ahead(app)
            assert again.outcome == "ready"

        assert list(edition_dates(app).values()) == [date(2026, 6, 11)]
        assert smtp.received == []  # made ahead, not sent
