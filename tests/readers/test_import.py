"""`newsletter readers import FILE.csv` and the staff upload: each platform's export, bad
rows, duplicates, suppressed and erased addresses, the steady opt-in emails, 100,000 rows."""

from __future__ import annotations

import io
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from newsletter.admin.models import AuditEntry
from newsletter.readers.importing import Platform, import_readers, send_queued_invites
from newsletter.readers.models import Consent, ConsentKind, Reader, ReaderStatus, Suppression
from tests.admin.conftest import signed_in_as
from tests.conftest import csrf_token, links_in
from tests.helpers import path_of, subscribe

SAMPLES = Path(__file__).parent / "samples"


def run_import(runner, name: str, *extra: str):
    return runner.invoke(args=["readers", "import", str(SAMPLES / name), *extra])


def reader(session, email: str) -> Reader:
    found = session.scalar(select(Reader).where(Reader.email_key == email.lower()))
    assert found is not None, f"no reader {email}"
    return found


class TestPlatforms:
    def test_mailchimp_confirmed_rows_come_in_confirmed_with_their_consent(self, runner, session):
        result = run_import(runner, "mailchimp_subscribed.csv")
        assert result.exit_code == 0, result.output
        assert "3 rows from mailchimp" in result.output
        assert "3 accepted (2 confirmed, 1 sent an opt-in email), 0 rejected" in result.output

        ada = reader(session, "ada@example.com")
        assert ada.status == ReaderStatus.CONFIRMED
        assert ada.timezone == "Europe/London"
        assert ada.consent_source == "mailchimp export mailchimp_subscribed.csv"
        assert ada.consent_at.isoformat() == "2023-03-01T09:16:40+00:00"
        assert ada.invite_queued_at is None
        (consent,) = ada.consents
        assert consent.kind == ConsentKind.IMPORT
        assert consent.ip == "203.0.113.7"
        assert "mailchimp export mailchimp_subscribed.csv" in consent.wording
        assert "CONFIRM_TIME" in consent.wording

        # Only OPTIN_TIME: the opt-in was never confirmed, so the reader is asked again.
        grace = reader(session, "grace@example.com")
        assert grace.email == "Grace@example.com"
        assert grace.status == ReaderStatus.PENDING
        assert grace.consent_at is None
        assert grace.invite_queued_at is not None
        assert grace.consents == []

    def test_mailchimp_unsubscribed_file_is_refused_row_by_row(self, runner, session):
        result = run_import(runner, "mailchimp_unsubscribed.csv")
        assert result.exit_code == 0, result.output
        assert "0 accepted" in result.output and "1 rejected" in result.output
        assert "line 2: gone@example.com: unsubscribed on Mailchimp" in result.output
        assert session.scalar(select(func.count()).select_from(Reader)) == 0

    def test_ghost(self, runner, session):
        result = run_import(runner, "ghost_members.csv", "--source", "ghost")
        assert result.exit_code == 0, result.output
        assert "2 accepted (2 confirmed, 0 sent an opt-in email), 1 rejected" in result.output
        assert "katherine@example.com: not subscribed to emails on Ghost" in result.output
        margaret = reader(session, "margaret@example.com")
        assert margaret.status == ReaderStatus.CONFIRMED
        assert margaret.consent_at.isoformat() == "2023-05-06T10:20:30+00:00"
        assert margaret.consent_source == "ghost export ghost_members.csv"

    def test_substack(self, runner, session):
        result = run_import(runner, "substack_subscribers.csv")
        assert result.exit_code == 0, result.output
        assert "from substack" in result.output
        assert "2 accepted (2 confirmed, 0 sent an opt-in email), 1 rejected" in result.output
        assert "edsger@example.com: emails turned off on Substack" in result.output
        assert reader(session, "alan@example.com").consent_at.year == 2023

    def test_listmonk_without_list_status_asks_for_opt_in(self, runner, session):
        result = run_import(runner, "listmonk_subscribers.csv")
        assert result.exit_code == 0, result.output
        assert "2 accepted (0 confirmed, 2 sent an opt-in email), 1 rejected" in result.output
        assert "spam@example.com: blocklisted on listmonk" in result.output
        john = reader(session, "john@example.com")
        assert john.status == ReaderStatus.PENDING
        assert john.invite_queued_at is not None

    def test_a_file_of_no_known_platform_imports_nothing(self, runner, session, tmp_path):
        path = tmp_path / "other.csv"
        path.write_text("address,when\nx@example.com,today\n")
        result = runner.invoke(args=["readers", "import", str(path)])
        assert result.exit_code == 1
        assert "match no export we know" in result.output
        assert session.scalar(select(func.count()).select_from(Reader)) == 0

    def test_the_named_platform_must_match_the_columns(self, runner, session):
        result = run_import(runner, "ghost_members.csv", "--source", "mailchimp")
        assert result.exit_code == 1
        assert "not a mailchimp export: it has no Email Address column" in result.output

    def test_a_missing_file_exits_1(self, runner, tmp_path):
        result = runner.invoke(args=["readers", "import", str(tmp_path / "nope.csv")])
        assert result.exit_code == 1
        assert "cannot read" in result.output


class TestBadRows:
    def test_every_row_is_accepted_or_rejected_with_a_reason(self, runner, session):
        result = run_import(runner, "malformed.csv")
        assert result.exit_code == 0, result.output
        assert "7 rows from mailchimp" in result.output
        assert "1 accepted (1 confirmed, 0 sent an opt-in email), 6 rejected" in result.output
        out = result.output
        assert "line 2: not-an-address: That doesn't look like an email address" in out
        assert "line 3: ok@example.com: CONFIRM_TIME is not a date: 'yesterday'" in out
        assert "line 4: (no address): Please enter your email address." in out
        assert "line 5: future@example.com: CONFIRM_TIME is in the future" in out
        assert "line 6: (no address): more cells than the header line has columns" in out
        assert "line 8: Good@example.com: the same address as line 7" in out
        assert [r.email for r in session.scalars(select(Reader))] == ["good@example.com"]

    def test_a_file_that_is_not_utf8_imports_nothing(self, runner, session, tmp_path):
        path = tmp_path / "latin1.csv"
        path.write_bytes(
            "Email Address,CONFIRM_TIME\nok@example.com,\nj\xf6rg@example.com,\n".encode("latin-1")
        )
        result = runner.invoke(args=["readers", "import", str(path)])
        assert result.exit_code == 1
        assert "not UTF-8" in result.output
        assert session.scalar(select(func.count()).select_from(Reader)) == 0

    @settings(
        max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
    )
    @given(body=st.text(max_size=300))
    def test_any_text_is_a_report_or_a_clear_refusal(self, app, body):
        from newsletter.errors import InvalidInput

        with app.app_context(), app.extensions["db"].sessionmaker() as session:
            try:
                report = import_readers(
                    session, io.StringIO("Email Address,CONFIRM_TIME\n" + body), filename="x.csv"
                )
            except InvalidInput as exc:
                assert exc.message
            else:
                assert report.accepted + report.rejected == report.rows
                assert len(report.rejections) == report.rejected
            finally:
                session.rollback()


class TestExistingReaders:
    def test_known_addresses_are_matched_case_insensitively_and_left_alone(
        self, runner, client, smtp, session
    ):
        subscribe(client, smtp, "ada@example.com")
        result = run_import(runner, "mailchimp_subscribed.csv")
        assert "line 2: ada@example.com: already a reader (confirmed)" in result.output
        assert (
            session.scalar(select(func.count()).where(Reader.email_key == "ada@example.com")) == 1
        )
        # Their own signup stays their consent.
        assert reader(session, "ada@example.com").consent_source == "signup"
        # A second run of the same file duplicates nobody.
        again = run_import(runner, "mailchimp_subscribed.csv")
        assert "0 accepted" in again.output and "3 rejected" in again.output
        assert session.scalar(select(func.count()).select_from(Reader)) == 3

    def test_suppressed_addresses_stay_suppressed(self, runner, app, session):
        with app.extensions["db"].session() as s:
            s.add(
                Reader(
                    email="GRACE@example.com",
                    email_key="grace@example.com",
                    status=ReaderStatus.BOUNCED,
                    suppression=Suppression.BOUNCED,
                    suppressed_reason="550 no such user",
                )
            )
        result = run_import(runner, "mailchimp_subscribed.csv")
        assert "Grace@example.com: suppressed here (bounced)" in result.output
        grace = reader(session, "grace@example.com")
        assert grace.status == ReaderStatus.BOUNCED and grace.invite_queued_at is None


class TestOptInEmails:
    def test_pending_imports_get_the_signup_confirmation_at_a_steady_rate(
        self, app, runner, smtp, session, client
    ):
        app.config["IMPORT_INVITES_PER_RUN"] = 1
        result = run_import(runner, "listmonk_subscribers.csv")
        assert "2 sent an opt-in email" in result.output
        assert smtp.received == []  # nothing goes out at import time

        with app.app_context(), app.extensions["db"].session() as s:
            assert send_queued_invites(s) == 1
        first = smtp.wait_for("john@example.com")[0]
        assert smtp.messages_to("frances@example.com") == []  # the next run's

        with app.app_context(), app.extensions["db"].session() as s:
            assert send_queued_invites(s) == 1
        smtp.wait_for("frances@example.com")
        with app.app_context(), app.extensions["db"].session() as s:
            assert send_queued_invites(s) == 0

        # It is the signup confirmation: its link confirms, and the consent is the opt-in.
        assert "Confirm your Both Sides Daily subscription" in first["Subject"]
        response = client.get(path_of(links_in(first, "/confirm/")[0]))
        assert response.status_code == 200
        session.expire_all()
        john = reader(session, "john@example.com")
        assert john.status == ReaderStatus.CONFIRMED
        assert john.consent_source == "signup"
        assert john.consent_at is not None


class TestStaffPage:
    def test_upload_imports_reports_and_audits(self, app, client, session):
        signed_in_as(client, app, "editor@example.com", staff=True)
        token = csrf_token(client, "/admin/readers/import")
        data = {
            "csrf_token": token,
            "source": "auto",
            "file": (io.BytesIO((SAMPLES / "ghost_members.csv").read_bytes()), "ghost_members.csv"),
        }
        response = client.post(
            "/admin/readers/import", data=data, content_type="multipart/form-data"
        )
        page = response.get_data(as_text=True)
        assert response.status_code == 200, page
        assert "3 rows from ghost (ghost_members.csv): 2 accepted" in page
        assert "not subscribed to emails on Ghost" in page
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "readers.import"))
        assert entry.staff_email == "editor@example.com"
        assert entry.target == "ghost_members.csv"

    def test_upload_without_csrf_is_refused_and_imports_nothing(self, app, client, session):
        signed_in_as(client, app, "editor@example.com", staff=True)
        data = {"file": (io.BytesIO((SAMPLES / "ghost_members.csv").read_bytes()), "g.csv")}
        response = client.post(
            "/admin/readers/import", data=data, content_type="multipart/form-data"
        )
        assert response.status_code == 400
        assert session.scalar(select(func.count()).select_from(Reader)) == 1  # the editor

    def test_a_bad_file_is_a_400_with_a_message(self, app, client, session):
        signed_in_as(client, app, "editor@example.com", staff=True)
        token = csrf_token(client, "/admin/readers/import")
        data = {"csrf_token": token, "source": "auto", "file": (io.BytesIO(b"a,b\n1,2\n"), "x.csv")}
        response = client.post(
            "/admin/readers/import", data=data, content_type="multipart/form-data"
        )
        assert response.status_code == 400
        assert "match no export we know" in response.get_data(as_text=True)

    def test_readers_who_are_not_staff_get_404(self, app, client):
        signed_in_as(client, app, "reader@example.com", staff=False)
        assert client.get("/admin/readers/import").status_code == 404


def test_100000_rows_import_in_bulk(app, session, tmp_path):
    rows = ["Email Address,OPTIN_TIME,CONFIRM_TIME,CONFIRM_IP"]
    for n in range(100_000):
        confirm = "2024-01-02 03:04:05" if n % 2 else ""
        rows.append(f"reader{n}@example.com,2024-01-01 00:00:00,{confirm},192.0.2.{n % 250}")
    rows.append("reader7@EXAMPLE.com,,2024-01-02 03:04:05,")  # one duplicate
    data = ("\n".join(rows) + "\n").encode()
    with app.app_context(), app.extensions["db"].session() as s:
        report = import_readers(
            s, io.BytesIO(data), filename="big.csv", platform=Platform.MAILCHIMP
        )
    assert report.rows == 100_001
    assert (report.confirmed, report.invited, report.rejected) == (50_000, 50_000, 1)
    assert session.scalar(select(func.count()).select_from(Reader)) == 100_000
    assert session.scalar(select(func.count()).select_from(Consent)) == 50_000
    assert (
        session.scalar(select(func.count()).where(Reader.invite_queued_at.is_not(None))) == 50_000
    )


def test_the_ascii_fast_path_finds_the_same_control_characters():
    import unicodedata

    from newsletter.readers.services import _has_control_characters

    for code in range(0x3000):
        ch = chr(code)
        expected = unicodedata.category(ch).startswith("C")
        assert _has_control_characters(f"a{ch}b@example.com") == expected, hex(code)
