"""`record_report`: each report stored once, matched to the right reader and delivery, and
the policy applied (hard bounce, soft bounces over editions, complaint)."""

from __future__ import annotations

import threading
from datetime import date, timedelta

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import func, select

from newsletter.deliverability.models import ReceivedReport
from newsletter.deliverability.reports import (
    BounceReport,
    OutcomeStatus,
    ReportKind,
    ReportOutcome,
    record_report,
)
from newsletter.readers.models import Reader, ReaderStatus, Suppression
from newsletter.readers.suppression import lift_suppression
from newsletter.tokens import MessageIds
from tests.conftest import TEST_SECRET, csrf_token
from tests.deliverability.conftest import NOW, add_reader, send_edition
from tests.smtp_server import SmtpServer

MAIL_FROM = "Both Sides Daily <daily@bothsides.test>"


def record(app: Flask, report: BounceReport, **kwargs: object) -> ReportOutcome:
    with app.app_context(), app.extensions["db"].session() as session:
        return record_report(session, report, **kwargs)  # type: ignore[arg-type]


def reader(app: Flask, reader_id: int) -> Reader:
    with app.extensions["db"].session() as session:
        found = session.get(Reader, reader_id)
        assert found is not None
        return found


def stored(app: Flask) -> list[ReceivedReport]:
    with app.extensions["db"].session() as session:
        return list(session.scalars(select(ReceivedReport).order_by(ReceivedReport.id)))


def hard(recipient: str, event_id: str = "ev-1", **kwargs: object) -> BounceReport:
    return BounceReport(
        source="postmark",
        event_id=event_id,
        kind=ReportKind.HARD_BOUNCE,
        recipient=recipient,
        diagnostic="550 5.1.1 The email account that you tried to reach does not exist",
        **kwargs,  # type: ignore[arg-type]
    )


class TestStoredOnce:
    def test_a_hard_bounce_suppresses_at_once_with_its_evidence(self, app: Flask) -> None:
        reader_id = add_reader(app, "Gone@Example.com")
        outcome = record(app, hard("gone@example.com"), now=NOW)
        assert outcome.status == OutcomeStatus.RECORDED
        assert outcome.suppression == Suppression.BOUNCED
        found = reader(app, reader_id)
        assert found.status == ReaderStatus.BOUNCED
        assert found.suppression == Suppression.BOUNCED
        assert found.suppressed_reason is not None
        for evidence in ("hard bounce", "postmark", "ev-1", "550 5.1.1"):
            assert evidence in found.suppressed_reason
        (row,) = stored(app)
        assert row.suppressed and row.reader_id == reader_id
        assert row.recipient_domain == "example.com"

    def test_the_same_report_again_changes_nothing(self, app: Flask) -> None:
        reader_id = add_reader(app, "gone@example.com")
        record(app, hard("gone@example.com"), now=NOW)
        with app.extensions["db"].session() as session:
            lift_suppression(session, session.get(Reader, reader_id))  # type: ignore[arg-type]
        again = record(app, hard("gone@example.com"), now=NOW + timedelta(hours=1))
        assert again.status == OutcomeStatus.DUPLICATE and not again.changed
        assert reader(app, reader_id).suppression is None
        assert len(stored(app)) == 1

    def test_the_same_id_from_another_source_is_another_report(self, app: Flask) -> None:
        add_reader(app, "gone@example.com")
        record(app, hard("gone@example.com"), now=NOW)
        other = BounceReport("mailgun", "ev-1", ReportKind.HARD_BOUNCE, "gone@example.com")
        assert record(app, other, now=NOW).status == OutcomeStatus.RECORDED
        assert len(stored(app)) == 2

    def test_an_unknown_address_is_kept_but_touches_nobody(self, app: Flask) -> None:
        outcome = record(app, hard("stranger@example.net"), now=NOW)
        assert outcome.status == OutcomeStatus.UNKNOWN_RECIPIENT
        (row,) = stored(app)
        assert row.reader_id is None and not row.suppressed
        assert record(app, hard("stranger@example.net"), now=NOW).status == OutcomeStatus.DUPLICATE

    def test_a_report_with_nothing_to_act_on_is_ignored(self, app: Flask) -> None:
        assert record(app, hard("", event_id="x")).status == OutcomeStatus.IGNORED
        assert record(app, hard("a@example.com", event_id="  ")).status == OutcomeStatus.IGNORED
        assert stored(app) == []

    def test_two_deliveries_of_one_report_at_once_record_it_once(self, app: Flask) -> None:
        reader_id = add_reader(app, "gone@example.com")
        outcomes: list[OutcomeStatus] = []
        barrier = threading.Barrier(4)

        def deliver() -> None:
            barrier.wait()
            outcomes.append(record(app, hard("gone@example.com"), now=NOW).status)

        threads = [threading.Thread(target=deliver) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert sorted(outcomes) == [OutcomeStatus.DUPLICATE] * 3 + [OutcomeStatus.RECORDED]
        assert len(stored(app)) == 1
        assert reader(app, reader_id).suppression == Suppression.BOUNCED


class TestMatching:
    def test_the_delivery_a_report_names_wins_over_the_address(self, app: Flask) -> None:
        sent = send_edition(app, date(2026, 12, 1), ["first@example.com"])
        # Forwarded mail bounces from another address: the signed delivery id says whose.
        outcome = record(
            app,
            hard("forwarded@elsewhere.example", delivery_id=sent.deliveries["first@example.com"]),
        )
        assert outcome.reader_id == sent.readers["first@example.com"]
        assert outcome.edition_id == sent.edition_id
        assert reader(app, outcome.reader_id).suppression == Suppression.BOUNCED  # type: ignore[arg-type]

    def test_our_message_id_names_the_delivery(self, app: Flask) -> None:
        sent = send_edition(app, date(2026, 12, 1), ["first@example.com", "second@example.com"])
        reader_id = sent.readers["second@example.com"]
        message_id = MessageIds(TEST_SECRET, MAIL_FROM, "e", sent.edition_id, "r").make(reader_id)
        outcome = record(app, hard("", message_id=message_id))
        assert outcome.delivery_id == sent.deliveries["second@example.com"]
        assert outcome.edition_id == sent.edition_id
        assert reader(app, reader_id).status == ReaderStatus.BOUNCED

    def test_a_forged_message_id_falls_back_to_the_address(self, app: Flask) -> None:
        sent = send_edition(app, date(2026, 12, 1), ["first@example.com", "second@example.com"])
        victim = sent.readers["first@example.com"]
        forged = f"<e.{sent.edition_id}.r.{victim}.0123456789abcdef@bothsides.test>"
        outcome = record(app, hard("second@example.com", message_id=forged))
        assert outcome.reader_id == sent.readers["second@example.com"]
        assert outcome.edition_id is None
        assert reader(app, victim).suppression is None


class TestSoftBounces:
    def soft(self, recipient: str, n: int, **kwargs: object) -> BounceReport:
        return BounceReport(
            source="ses",
            event_id=f"soft-{n}",
            kind=ReportKind.SOFT_BOUNCE,
            recipient=recipient,
            diagnostic="452 4.2.2 mailbox full",
            **kwargs,  # type: ignore[arg-type]
        )

    def test_three_on_three_editions_within_15_days_suppress(self, app: Flask) -> None:
        days = [date(2026, 11, 20), date(2026, 11, 25), date(2026, 12, 1)]
        sends = [send_edition(app, day, ["full@example.com"]) for day in days]
        reader_id = sends[0].readers["full@example.com"]
        outcomes = [
            record(
                app,
                self.soft("full@example.com", n, delivery_id=s.deliveries["full@example.com"]),
                now=NOW - timedelta(days=2 - n),
            )
            for n, s in enumerate(sends)
        ]
        assert [o.suppression for o in outcomes] == [None, None, Suppression.BOUNCED]
        found = reader(app, reader_id)
        assert found.status == ReaderStatus.BOUNCED
        assert "3 soft bounces" in (found.suppressed_reason or "")

    def test_three_on_one_edition_do_not(self, app: Flask) -> None:
        sent = send_edition(app, date(2026, 12, 1), ["full@example.com"])
        for n in range(3):
            report = self.soft(
                "full@example.com", n, delivery_id=sent.deliveries["full@example.com"]
            )
            record(app, report, now=NOW + timedelta(hours=n))
        assert reader(app, sent.readers["full@example.com"]).suppression is None

    def test_three_spread_over_more_than_15_days_do_not(self, app: Flask) -> None:
        reader_id = add_reader(app, "full@example.com")
        for n, days_ago in enumerate((20, 10, 0)):
            at = NOW - timedelta(days=days_ago)
            record(app, self.soft("full@example.com", n, occurred_at=at), now=at)
        assert reader(app, reader_id).suppression is None
        # Days count as editions when a report names none: one more within the window does.
        record(app, self.soft("full@example.com", 9), now=NOW + timedelta(days=1))
        assert reader(app, reader_id).suppression == Suppression.BOUNCED


class TestComplaints:
    def complaint(self, recipient: str) -> BounceReport:
        return BounceReport("sendgrid", "spam-1", ReportKind.COMPLAINT, recipient, "spamreport")

    def test_a_complaint_unsubscribes_and_suppresses(self, app: Flask) -> None:
        reader_id = add_reader(app, "angry@example.com")
        outcome = record(app, self.complaint("angry@example.com"), now=NOW)
        assert outcome.suppression == Suppression.COMPLAINED and outcome.unsubscribed
        found = reader(app, reader_id)
        assert found.status == ReaderStatus.UNSUBSCRIBED
        assert found.suppression == Suppression.COMPLAINED
        assert "sendgrid" in (found.suppressed_reason or "")

    def test_a_later_signup_does_not_override_it(
        self, app: Flask, client: FlaskClient, smtp: SmtpServer
    ) -> None:
        reader_id = add_reader(app, "angry@example.com")
        record(app, self.complaint("angry@example.com"), now=NOW)
        token = csrf_token(client)
        response = client.post(
            "/signup", data={"email": "angry@example.com", "timezone": "UTC", "csrf_token": token}
        )
        assert response.status_code in (200, 303)
        found = reader(app, reader_id)
        assert found.status == ReaderStatus.UNSUBSCRIBED
        assert found.suppression == Suppression.COMPLAINED
        assert smtp.messages_to("angry@example.com") == []

    def test_a_bounce_after_a_complaint_keeps_the_complaint(self, app: Flask) -> None:
        reader_id = add_reader(app, "angry@example.com")
        record(app, self.complaint("angry@example.com"), now=NOW)
        outcome = record(app, hard("angry@example.com"), now=NOW)
        assert outcome.status == OutcomeStatus.RECORDED and outcome.suppression is None
        assert reader(app, reader_id).suppression == Suppression.COMPLAINED
        with app.extensions["db"].session() as session:
            evidence = session.scalar(
                select(func.count()).where(ReceivedReport.suppressed).select_from(ReceivedReport)
            )
        assert evidence == 1


@pytest.mark.parametrize("source", ["nope", ""])
def test_an_unknown_source_is_a_programming_error(app: Flask, source: str) -> None:
    with pytest.raises(ValueError):
        record(app, BounceReport(source, "e", ReportKind.HARD_BOUNCE, "a@example.com"))
