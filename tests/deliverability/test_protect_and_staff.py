"""Protecting the sender (an edition whose complaints or hard bounces pass the limits
pauses by itself, staff are emailed, the edition page says why, staff resume by hand) and
the staff deliverability page (rates, the suppression list, CSV export, lift)."""

from __future__ import annotations

import csv
import io
from datetime import date

from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from newsletter.admin.models import AuditEntry
from newsletter.deliverability.reports import BounceReport, ReportKind, record_report
from newsletter.editions.models import Edition
from newsletter.readers.models import Reader, ReaderStatus
from tests.admin.conftest import STAFF, post, signed_in_as
from tests.deliverability.conftest import NOW, Sent, add_reader, send_edition
from tests.smtp_server import SmtpServer


def complain(app: Flask, sent: Sent, emails: list[str], source: str = "sendgrid") -> list[bool]:
    paused = []
    for email in emails:
        report = BounceReport(
            source,
            f"c-{sent.edition_id}-{email}",
            ReportKind.COMPLAINT,
            email,
            "spamreport",
            delivery_id=sent.deliveries[email],
        )
        with app.app_context(), app.extensions["db"].session() as session:
            paused.append(record_report(session, report, now=NOW).paused_edition)
    return paused


def edition(app: Flask, edition_id: int) -> Edition:
    with app.extensions["db"].session() as session:
        found = session.get(Edition, edition_id)
        assert found is not None
        return found


def audit(app: Flask) -> list[tuple[str, str]]:
    with app.extensions["db"].session() as session:
        return [(a.action, a.detail) for a in session.scalars(select(AuditEntry))]


class TestProtectTheSender:
    def test_a_complaint_storm_pauses_the_edition_and_emails_staff(
        self, app: Flask, client: FlaskClient, smtp: SmtpServer
    ) -> None:
        add_reader(app, "boss@bothsides.test", staff=True)
        angry = [f"angry{n}@example.com" for n in range(5)]
        sent = send_edition(app, date(2026, 12, 2), angry, extra=995)  # 1,000 delivered
        # 2 in 1,000 is 0.2%: under the limit. The third makes 0.3%.
        assert complain(app, sent, angry[:3]) == [False, False, True]
        found = edition(app, sent.edition_id)
        assert found.paused
        assert "complaint rate 0.30%" in (found.auto_paused_reason or "")
        (alert,) = smtp.wait_for("boss@bothsides.test")
        assert "paused" in alert["Subject"]
        assert "complaint rate 0.30%" in alert.get_body(preferencelist=("plain",)).get_content()

        signed_in_as(client, app, STAFF, staff=True)
        page = client.get(f"/admin/editions/{sent.edition_id}").get_data(as_text=True)
        assert "Paused by itself" in page and "complaint rate 0.30%" in page
        resumed = post(client, f"/admin/editions/{sent.edition_id}/resume")
        assert resumed.status_code == 303
        assert not edition(app, sent.edition_id).paused
        # Staff chose to carry on: more complaints do not pause it again.
        more = Sent(sent.edition_id, sent.readers, {e: sent.deliveries[e] for e in angry[3:]})
        assert complain(app, more, angry[3:]) == [False, False]
        assert not edition(app, sent.edition_id).paused
        assert len(smtp.messages_to("boss@bothsides.test")) == 1

    def test_under_1000_deliveries_nothing_pauses(self, app: Flask) -> None:
        angry = [f"angry{n}@example.com" for n in range(50)]
        sent = send_edition(app, date(2026, 12, 2), angry, extra=900)
        assert not any(complain(app, sent, angry))
        assert not edition(app, sent.edition_id).paused

    def test_hard_bounces_at_5_percent_pause(self, app: Flask) -> None:
        gone = [f"gone{n}@example.com" for n in range(50)]
        sent = send_edition(app, date(2026, 12, 2), gone, extra=950)
        paused = []
        for n, email in enumerate(gone):
            report = BounceReport(
                "mailgun",
                f"b{n}",
                ReportKind.HARD_BOUNCE,
                email,
                "550 5.1.1",
                delivery_id=sent.deliveries[email],
            )
            with app.app_context(), app.extensions["db"].session() as session:
                paused.append(record_report(session, report, now=NOW).paused_edition)
        assert paused.index(True) == 49
        assert "hard-bounce rate 5.00%" in (edition(app, sent.edition_id).auto_paused_reason or "")


class TestStaffPage:
    def test_rates_and_the_suppression_list(self, app: Flask, client: FlaskClient) -> None:
        emails = ["a@gmail.com", "b@yahoo.com", "c@hotmail.com", "d@example.org"]
        sent = send_edition(app, date(2026, 12, 1), emails)
        complain(app, sent, ["a@gmail.com"])
        report = BounceReport(
            "ses", "fb/c", ReportKind.HARD_BOUNCE, "c@hotmail.com", "5.1.1 smtp; 550 unknown"
        )
        with app.app_context(), app.extensions["db"].session() as session:
            record_report(session, report, now=NOW)
        signed_in_as(client, app, STAFF, staff=True)
        page = client.get("/admin/deliverability").get_data(as_text=True)
        assert 'data-limit="0.001"' in page and 'data-limit="0.003"' in page
        assert "2026-12-01" in page
        for group in ("gmail.com", "yahoo.com", "outlook.com", "others"):
            assert f"<td>{group}</td>" in page
        # One complaint in four delivered, at gmail.com: 100% of gmail, 25% of the edition.
        assert 'data-value="0.250000"' in page and 'data-value="1.000000"' in page
        assert "a@gmail.com" in page and "c@hotmail.com" in page
        assert "ses report fb/c: 5.1.1 smtp; 550 unknown" in page
        assert "b@yahoo.com" not in page.split('id="suppressions"')[1]

        searched = client.get("/admin/deliverability?q=hotmail").get_data(as_text=True)
        table = searched.split('id="suppressions"')[1]
        assert "c@hotmail.com" in table and "a@gmail.com" not in table

    def test_csv_export_is_audited_and_safe(self, app: Flask, client: FlaskClient) -> None:
        add_reader(app, "=HYPERLINK(1)@example.com")
        with app.app_context(), app.extensions["db"].session() as session:
            record_report(
                session,
                BounceReport("postmark", "1", ReportKind.HARD_BOUNCE, "=hyperlink(1)@example.com"),
                now=NOW,
            )
        signed_in_as(client, app, STAFF, staff=True)
        response = post(client, "/admin/deliverability/suppressions.csv")
        assert response.status_code == 200 and response.mimetype == "text/csv"
        rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
        assert rows[0][0] == "email"
        assert rows[1][0] == "'=HYPERLINK(1)@example.com"
        assert rows[1][4:6] == ["postmark", "1"]
        assert ("deliverability.export", "1 rows") in audit(app)

    def test_lift_is_audited(self, app: Flask, client: FlaskClient) -> None:
        reader_id = add_reader(app, "gone@example.com")
        with app.app_context(), app.extensions["db"].session() as session:
            record_report(
                session,
                BounceReport("smtp", "d1", ReportKind.HARD_BOUNCE, "gone@example.com"),
                now=NOW,
            )
        signed_in_as(client, app, STAFF, staff=True)
        response = post(client, f"/admin/deliverability/suppressions/{reader_id}/lift")
        assert response.status_code == 303
        assert response.headers["Location"].endswith("/admin/deliverability")
        with app.extensions["db"].session() as session:
            found = session.get(Reader, reader_id)
            assert found is not None
            assert found.suppression is None and found.status == ReaderStatus.CONFIRMED
        assert ("reader.unsuppress", "was bounced; now confirmed") in audit(app)
        again = post(client, f"/admin/deliverability/suppressions/{reader_id}/lift")
        assert again.status_code == 303  # "not suppressed" is a flashed message, not a 500

    def test_only_staff(self, app: Flask, client: FlaskClient) -> None:
        assert client.get("/admin/deliverability").status_code == 404
        signed_in_as(client, app, "reader@example.com", staff=False)
        assert client.get("/admin/deliverability").status_code == 404
        assert client.post("/admin/deliverability/suppressions.csv").status_code == 404
