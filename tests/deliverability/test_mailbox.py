"""The bounce mailbox against a real Dovecot: DSNs and ARF reports from several MTAs and
providers suppress the right reader once, are moved out of the inbox, and a re-read
changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from imapclient import IMAPClient
from sqlalchemy import select

from newsletter.deliverability.dsn import Verp, parse_report
from newsletter.deliverability.mailbox import MailboxUrl
from newsletter.deliverability.models import ReceivedReport, ReportKind
from newsletter.deliverability.verp import return_path
from newsletter.errors import ConfigError
from newsletter.readers.models import Reader, ReaderStatus, Suppression
from newsletter.tokens import MessageIds
from tests.conftest import TEST_SECRET
from tests.deliverability import dovecot as fixtures
from tests.deliverability.conftest import send_edition
from tests.deliverability.dovecot import PASSWORD, USER, Dovecot

dovecot = fixtures.dovecot
SAMPLES = Path(__file__).parent / "samples"
BOUNCES = "bounces@bounces.bothsides.test"
MAIL_FROM = "Both Sides Daily <daily@bothsides.test>"
# sample -> (what it reports, the reader it is about)
EXPECTED = {
    "postfix_hard.eml": (ReportKind.HARD_BOUNCE, "postfix.user@example.net"),
    "exim_soft.eml": (ReportKind.SOFT_BOUNCE, "exim.user@example.org"),
    "outlook_hard.eml": (ReportKind.HARD_BOUNCE, "gone.reader@outlook.com"),
    "gmail_hard.eml": (ReportKind.HARD_BOUNCE, "no.such.reader@gmail.com"),
    "yahoo_arf.eml": (ReportKind.COMPLAINT, "angry.reader@yahoo.com"),
    "provider_fbl_arf.eml": (ReportKind.COMPLAINT, "fbl.reader@isp.example"),
    "qmail_plain.eml": (ReportKind.HARD_BOUNCE, "old.reader@old-isp.example"),
}


def sample(name: str, recipient: str = "", delivery_id: int = 0, message_id: str = "") -> bytes:
    text = (SAMPLES / name).read_text()
    text = (
        text.replace("{{VERP}}", return_path(BOUNCES, TEST_SECRET, delivery_id))
        .replace("{{RCPT}}", recipient)
        .replace("{{RCPT_LOCAL}}", recipient.partition("@")[0])
        .replace("{{MSGID}}", message_id)
    )
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def client(server: Dovecot) -> IMAPClient:
    imap = IMAPClient("127.0.0.1", port=server.port, ssl=False, timeout=10)
    imap.login(USER, PASSWORD)
    return imap


def counts(server: Dovecot) -> dict[str, int]:
    imap = client(server)
    try:
        return {
            folder: imap.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"]
            for folder in ("INBOX", "Processed", "Unparsed")
            if imap.folder_exists(folder)
        }
    finally:
        imap.logout()


@pytest.fixture
def mailbox(dovecot: Dovecot) -> Dovecot:
    """The bounce mailbox, emptied (every folder) before each test."""
    imap = client(dovecot)
    for folder in ("Processed", "Unparsed"):
        if imap.folder_exists(folder):
            imap.delete_folder(folder)
    imap.select_folder("INBOX")
    uids = imap.search()
    if uids:
        imap.delete_messages(uids)
        imap.expunge()
    imap.logout()
    return dovecot


@pytest.fixture
def app_settings(dovecot: Dovecot):  # type: ignore[no-untyped-def]
    return {"BOUNCE_ADDRESS": BOUNCES, "BOUNCE_IMAP_URL": dovecot.url}


def readers_by_email(app) -> dict[str, Reader]:  # type: ignore[no-untyped-def]
    with app.extensions["db"].session() as session:
        rows = session.scalars(select(Reader)).all()
        session.expunge_all()
        return {r.email: r for r in rows}


def reports(app) -> list[ReceivedReport]:  # type: ignore[no-untyped-def]
    with app.extensions["db"].session() as session:
        rows = session.scalars(select(ReceivedReport).order_by(ReceivedReport.id)).all()
        session.expunge_all()
        return list(rows)


def test_reports_from_every_format_suppress_the_right_reader_once(app, runner, mailbox):
    from datetime import date

    emails = [email for _, email in EXPECTED.values()]
    sent = send_edition(app, date(2026, 12, 2), [*emails, "bystander@example.com"])
    ids = MessageIds(TEST_SECRET, MAIL_FROM, "e", sent.edition_id, "r")
    imap = client(mailbox)
    for name, (_, email) in EXPECTED.items():
        data = sample(name, email, sent.deliveries[email], ids.make(sent.readers[email]))
        imap.append("INBOX", data)
    imap.append("INBOX", sample("not_a_report.eml"))
    imap.logout()

    result = runner.invoke(args=["bounces", "fetch"])

    assert result.exit_code == 0, result.output
    assert "8 messages: 7 reports recorded, 0 seen before" in result.output
    assert "1 set aside unparsed" in result.output
    assert counts(mailbox) == {"INBOX": 0, "Processed": 7, "Unparsed": 1}
    stored = reports(app)
    assert sorted((r.recipient, r.kind) for r in stored) == sorted(
        (email, kind) for kind, email in EXPECTED.values()
    )
    for row in stored:  # each matched through its VERP token to the exact delivery
        assert row.delivery_id == sent.deliveries[row.recipient]
        assert row.edition_id == sent.edition_id
        assert row.source == "mailbox" and row.raw_ref.startswith("imap:INBOX/")
    readers = readers_by_email(app)
    for kind, email in EXPECTED.values():
        reader = readers[email]
        if kind is ReportKind.HARD_BOUNCE:
            assert reader.suppression == Suppression.BOUNCED
            assert reader.status == ReaderStatus.BOUNCED
        elif kind is ReportKind.COMPLAINT:
            assert reader.suppression == Suppression.COMPLAINED
            assert reader.status == ReaderStatus.UNSUBSCRIBED
        else:  # one soft bounce suppresses nobody
            assert reader.suppression is None and reader.status == ReaderStatus.CONFIRMED
    assert readers["bystander@example.com"].suppression is None

    # Nothing is read twice: the inbox is empty now.
    again = runner.invoke(args=["bounces", "fetch"])
    assert "0 messages" in again.output

    # A job killed after committing but before moving reads the same reports again:
    # every one is a duplicate, nothing changes.
    imap = client(mailbox)
    imap.select_folder("Processed")
    imap.copy(imap.search(), "INBOX")
    imap.logout()
    replay = runner.invoke(args=["bounces", "fetch"])
    assert replay.exit_code == 0, replay.output
    assert "7 messages: 0 reports recorded, 7 seen before" in replay.output
    assert len(reports(app)) == 7


def test_a_forged_token_names_no_delivery(app, runner, mailbox, caplog):
    from datetime import date

    sent = send_edition(app, date(2026, 12, 3), ["victim@example.com", "other@example.com"])
    genuine = return_path(BOUNCES, TEST_SECRET, sent.deliveries["other@example.com"])
    forged_id = sent.deliveries["victim@example.com"]
    forged = genuine.replace(f"+{sent.deliveries['other@example.com']}.", f"+{forged_id}.")
    data = sample("postfix_hard.eml", "stranger@example.net", 0, "<nothing@elsewhere>")
    data = data.replace(return_path(BOUNCES, TEST_SECRET, 0).encode(), forged.encode())
    imap = client(mailbox)
    imap.append("INBOX", data)
    imap.logout()

    result = runner.invoke(args=["bounces", "fetch"])

    assert result.exit_code == 0, result.output
    assert "does not verify" in caplog.text
    [row] = reports(app)
    assert row.delivery_id is None and row.reader_id is None
    readers = readers_by_email(app)
    assert readers["victim@example.com"].suppression is None


def test_an_unreachable_mailbox_is_a_clear_error(app, runner, monkeypatch):
    from tests.smtp_server import free_port

    app.config["BOUNCE_IMAP_URL"] = f"imap://u:p@127.0.0.1:{free_port()}/INBOX"
    result = runner.invoke(args=["bounces", "fetch"])
    assert result.exit_code == 1
    assert "cannot read the bounce mailbox" in result.output


def test_a_wrong_password_is_a_clear_error(app, runner, dovecot):
    app.config["BOUNCE_IMAP_URL"] = dovecot.url.replace(PASSWORD, "wrong")
    result = runner.invoke(args=["bounces", "fetch"])
    assert result.exit_code == 1
    assert "error: cannot read the bounce mailbox" in result.output


@pytest.mark.parametrize(
    "url",
    ["http://u:p@host/INBOX", "imaps://host/INBOX", "imap://u:p@host:port/INBOX", "nonsense"],
)
def test_bad_urls_are_config_errors(url):
    with pytest.raises(ConfigError, match="BOUNCE_IMAP_URL"):
        MailboxUrl.parse(url)


def test_url_parts():
    url = MailboxUrl.parse("imaps://bo%40x:p%2Fw@mail.example:1993/Bounces")
    assert (url.secure, url.host, url.port, url.user, url.password, url.folder) == (
        True,
        "mail.example",
        1993,
        "bo@x",
        "p/w",
        "Bounces",
    )


# --- the parser faces the outside: any bytes, never an exception -------------------------

VERP = Verp(BOUNCES, TEST_SECRET)
RAW = [sample(name, "r@example.com", 5, "<m@x>") for name in sorted(EXPECTED)]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=4000))
def test_arbitrary_bytes_never_raise(data):
    found = parse_report(data, fallback_id="f", verp=VERP)
    assert isinstance(found, list)


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(RAW),
    st.integers(min_value=0, max_value=5000),
    st.integers(min_value=0, max_value=400),
    st.binary(max_size=200),
)
def test_damaged_reports_never_raise(data, at, cut, junk):
    damaged = data[:at] + junk + data[at + cut :]
    for report in parse_report(damaged, fallback_id="f", verp=VERP):
        assert report.source == "mailbox" and report.event_id
        assert "@" in report.recipient


@settings(max_examples=60, deadline=None)
@given(st.text(min_size=1, max_size=60))
def test_header_values_of_any_text_never_raise(value):
    for name in ("postfix_hard.eml", "yahoo_arf.eml"):
        data = sample(name, value, 5, value)
        assert isinstance(parse_report(data, fallback_id="f", verp=VERP), list)


def test_the_worker_reads_the_mailbox_every_bounce_fetch_minutes(app):
    from jobs.scheduler import build_scheduler

    app.config["BOUNCE_FETCH_MINUTES"] = 7
    jobs = {job.id: job for job in build_scheduler(app).get_jobs()}
    job = jobs["fetch_bounces"]
    assert job.func_ref == "jobs.tasks:fetch_bounces"
    assert job.trigger.interval.total_seconds() == 7 * 60
