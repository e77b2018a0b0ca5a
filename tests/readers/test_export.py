"""Readers out: the staff CSV and `newsletter readers export`, streamed, audited, and safe
to open in a spreadsheet."""

from __future__ import annotations

import csv
import io

from sqlalchemy import select

from newsletter.admin.models import AuditEntry
from newsletter.db import utcnow
from newsletter.readers.exporting import COLUMNS, safe_cell
from newsletter.readers.models import Reader, ReaderStatus, Suppression
from tests.admin.conftest import signed_in_as
from tests.conftest import csrf_token


def add_readers(app) -> None:
    with app.extensions["db"].session() as s:
        s.add_all(
            [
                Reader(
                    email="Ada@example.com",
                    email_key="ada@example.com",
                    status=ReaderStatus.CONFIRMED,
                    confirmed_at=utcnow(),
                    consent_source="signup",
                    consent_at=utcnow(),
                    timezone="Europe/London",
                    delivery_hour=7,
                ),
                Reader(
                    email="=cmd|' /C calc'!A0@example.com",
                    email_key="=cmd|' /c calc'!a0@example.com",
                    status=ReaderStatus.BOUNCED,
                    suppression=Suppression.BOUNCED,
                    suppressed_reason="+550 @no such user",
                ),
            ]
        )


def parse(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def test_safe_cell_defuses_formulas():
    for start in ("=", "+", "-", "@", "\t", "\r"):
        assert safe_cell(f"{start}SUM(A1)") == f"'{start}SUM(A1)"
    assert safe_cell("ada@example.com") == "ada@example.com"
    assert safe_cell(None) == ""


def test_staff_export_streams_every_reader_and_is_audited(app, client, session):
    add_readers(app)
    signed_in_as(client, app, "editor@example.com", staff=True)
    response = client.post(
        "/admin/readers/export", data={"csrf_token": csrf_token(client, "/admin/readers/import")}
    )
    assert response.status_code == 200
    assert response.is_streamed
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    rows = parse(response.get_data(as_text=True))
    assert list(rows[0]) == COLUMNS
    by_email = {r["email"]: r for r in rows}
    ada = by_email["Ada@example.com"]
    assert ada["status"] == "confirmed"
    assert ada["plan"] == "free"
    assert ada["delivery_hour"] == "7"
    assert ada["timezone"] == "Europe/London"
    assert ada["consent_source"] == "signup"
    assert ada["consent_at"]
    evil = by_email["'=cmd|' /C calc'!A0@example.com"]
    assert evil["suppression"] == "bounced"
    assert evil["suppression_reason"] == "'+550 @no such user"
    entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "readers.export"))
    assert entry.staff_email == "editor@example.com"


def test_staff_export_needs_csrf(app, client):
    signed_in_as(client, app, "editor@example.com", staff=True)
    assert client.post("/admin/readers/export").status_code == 400


def test_cli_export_to_a_file(app, runner, session, tmp_path):
    add_readers(app)
    path = tmp_path / "out.csv"
    result = runner.invoke(args=["readers", "export", str(path)])
    assert result.exit_code == 0, result.output
    rows = parse(path.read_text())
    assert sorted(r["email"] for r in rows) == [
        "'=cmd|' /C calc'!A0@example.com",
        "Ada@example.com",
    ]
    entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "readers.export"))
    assert entry.staff_email == "command line"


def test_cli_export_to_stdout_round_trips_many_chunks(app, runner):
    with app.extensions["db"].session() as s:
        s.add_all(
            Reader(email=f"r{n}@example.com", email_key=f"r{n}@example.com") for n in range(2500)
        )
    result = runner.invoke(args=["readers", "export"])
    assert result.exit_code == 0
    rows = parse(result.output)
    assert len(rows) == 2500
    assert len({r["email"] for r in rows}) == 2500
