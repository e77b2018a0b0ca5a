"""A 5xx during the SMTP session is a hard-bounce report like any other: stored once,
naming the delivery and its edition, evidence of the reader's suppression."""

from __future__ import annotations

from flask import Flask
from flask.testing import FlaskCliRunner
from sqlalchemy import select

from newsletter.db import utcnow
from newsletter.deliverability.models import ReceivedReport, ReportKind
from newsletter.readers.models import ReaderStatus
from tests.delivery.conftest import add_readers, add_stories, deliveries, reader_row
from tests.smtp_server import SmtpServer


def test_a_permanent_refusal_is_recorded_as_a_report(
    app: Flask, runner: FlaskCliRunner, smtp: SmtpServer
) -> None:
    readers = add_readers(app, 3)
    bad = readers[1]
    smtp.handler.rcpt_refusals[bad.email] = "550 5.1.1 <reader1@example.com>: no such user"
    add_stories(app, utcnow())

    result = runner.invoke(args=["edition", "send", "--now"])

    assert result.exit_code == 0, result.output
    with app.extensions["db"].session() as session:
        (report,) = session.scalars(select(ReceivedReport)).all()
    row = next(d for d in deliveries(app) if d.reader_id == bad.id)
    assert (report.source, report.kind) == ("smtp", ReportKind.HARD_BOUNCE)
    assert (report.delivery_id, report.edition_id, report.reader_id) == (
        row.id,
        row.edition_id,
        bad.id,
    )
    assert report.suppressed and "550 5.1.1" in report.diagnostic
    found = reader_row(app, bad.id)
    assert found.status == ReaderStatus.BOUNCED
    assert f"report delivery {row.id}" in (found.suppressed_reason or "")
