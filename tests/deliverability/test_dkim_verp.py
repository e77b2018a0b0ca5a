"""Every message leaves DKIM-signed (verified by dkimpy against the public key) and, with
BOUNCE_ADDRESS, from its own VERP address that leads back to the delivery."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import select

from newsletter.admin.services import send_rendered_test
from newsletter.config import PROJECT_ROOT
from newsletter.db import utcnow
from newsletter.deliverability.dkim import DkimKey, DkimSigner, signer_from_config
from newsletter.deliverability.verp import delivery_of, return_path
from newsletter.delivery.models import Delivery
from newsletter.errors import ConfigError
from newsletter.mail.message import compose
from newsletter.mail.render import RenderedEmail
from newsletter.mail.sending import deliver_now
from tests.conftest import TEST_SECRET
from tests.deliverability.keys import dns_records, keys, verify_all
from tests.delivery.conftest import add_readers, add_stories

DOMAIN = "bothsides.test"
RECORDS = dns_records(DOMAIN)
BOUNCES = "bounces@bounces.bothsides.test"


def message(subject: str = "Today: both sides of the budget") -> bytes:
    template = compose(
        mail_from=f"Both Sides Daily <daily@{DOMAIN}>",
        subject=subject,
        text="Hello\n\nThe council voted.\n\n\n",
        html="<p>Hello</p>",
        list_id="Both Sides Daily <daily.bothsides.test>",
        feedback_id="e1:free:daily.bothsides.test:bsd",
    )
    return template.render(
        {
            "to": "reader@example.com",
            "date": "Wed, 02 Dec 2026 12:00:00 +0000",
            "message_id": "<m1@bothsides.test>",
            "unsubscribe_url": "http://localhost/unsubscribe/tok",
        }
    )


def both_signers() -> DkimSigner:
    k = keys()
    return DkimSigner([DkimKey("s2026", DOMAIN, k.rsa), DkimKey("ed2026", DOMAIN, k.ed)])


class TestSigner:
    def test_both_signatures_verify_and_cover_the_list_headers(self):
        signed = both_signers().sign(message())
        assert verify_all(signed, RECORDS) == [(b"rsa-sha256", True), (b"ed25519-sha256", True)]
        head = signed.split(b"\r\n\r\n", 1)[0].replace(b"\r\n\t", b" ")
        covered = head.split(b"h=", 1)[1].split(b";", 1)[0].split(b":")
        for name in (b"from", b"to", b"subject", b"date", b"message-id", b"list-id"):
            assert name in covered
        assert {b"list-unsubscribe", b"list-unsubscribe-post", b"feedback-id"} <= set(covered)
        assert {b"mime-version", b"content-type"} <= set(covered)
        assert b"d=bothsides.test" in head

    @pytest.mark.parametrize(
        ("old", "new"),
        [
            (b"The council voted.", b"The council vetoed."),  # body
            (b"Subject: Today", b"Subject: Tomorrow"),  # a covered header
            (b"/unsubscribe/tok", b"/unsubscribe/evil"),  # the one-click target
        ],
    )
    def test_a_tampered_message_fails(self, old, new):
        signed = both_signers().sign(message())
        assert old in signed
        tampered = signed.replace(old, new, 1)
        assert verify_all(tampered, RECORDS) == [
            (b"rsa-sha256", False),
            (b"ed25519-sha256", False),
        ]

    def test_folded_and_encoded_subjects_verify(self):
        subject = "Ünïcode and a long subject " * 5
        signed = both_signers().sign(message(subject))
        assert all(ok for _, ok in verify_all(signed, RECORDS))

    def test_the_wrong_public_key_fails(self):
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        records = dict(RECORDS)
        records[b"s2026._domainkey.bothsides.test."] = (
            DkimKey("s2026", DOMAIN, other).public_record().encode()
        )
        signed = both_signers().sign(message())
        assert verify_all(signed, records)[0] == (b"rsa-sha256", False)


def settings(tmp_path, **extra):  # type: ignore[no-untyped-def]
    rsa_path, ed_path = keys().write(tmp_path)
    return {
        "DKIM_SELECTOR": "s2026",
        "DKIM_PRIVATE_KEY_FILE": str(rsa_path),
        "DKIM_ED25519_SELECTOR": "ed2026",
        "DKIM_ED25519_PRIVATE_KEY_FILE": str(ed_path),
        **extra,
    }


@pytest.fixture
def app_settings(tmp_path):  # type: ignore[no-untyped-def]
    return settings(tmp_path, BOUNCE_ADDRESS=BOUNCES, SEND_BATCH_SIZE=5)


ALL_GOOD = [(b"rsa-sha256", True), (b"ed25519-sha256", True)]


class TestEveryMessageThroughARealServer:
    def test_transactional_mail_is_signed_and_returns_to_the_bounce_address(self, app, smtp):
        deliver_now(
            app,
            "confirm",
            "new@example.com",
            {"confirm_url": "http://localhost/confirm/abc", "valid_hours": 72},
        )
        [received] = smtp.received
        assert verify_all(received.data, RECORDS) == ALL_GOOD
        assert received.mail_from == BOUNCES  # no delivery to name

    def test_staff_test_sends_are_signed(self, app, smtp):
        rendered = RenderedEmail(subject="Hello", text="Hi there", html="<p>Hi there</p>")
        send_rendered_test(app, "staff@example.com", rendered, list_mail=True)
        [received] = smtp.received
        assert received.message["Subject"] == "[Test] Hello"
        assert verify_all(received.data, RECORDS) == ALL_GOOD

    def test_each_edition_message_is_signed_with_a_return_path_naming_its_delivery(
        self, app, runner, smtp
    ):
        add_readers(app, 3)
        add_stories(app, utcnow())
        result = runner.invoke(args=["edition", "send", "--now"])
        assert result.exit_code == 0, result.output
        assert len(smtp.received) == 3
        with app.extensions["db"].session() as session:
            rows = {
                d.id: (d.edition_id, d.reader.email)
                for d in session.scalars(select(Delivery)).all()
            }
        seen = set()
        for received in smtp.received:
            assert verify_all(received.data, RECORDS) == ALL_GOOD
            msg = received.message
            edition_id = next(iter(rows.values()))[0]
            assert msg["Feedback-ID"] == f"e{edition_id}:free:daily.both-sides.localhost:bsd"
            local, _, domain = received.mail_from.partition("@")
            assert domain == "bounces.bothsides.test" and local.startswith("bounces+")
            delivery_id = delivery_of(received.mail_from, BOUNCES, TEST_SECRET)
            assert delivery_id in rows
            assert rows[delivery_id] == (edition_id, received.rcpt_tos[0])
            seen.add(delivery_id)
        assert seen == set(rows)  # one distinct Return-Path per delivery


class TestUnsigned:
    def test_without_settings_nothing_is_signed_and_mail_from_is_the_envelope(self, tmp_path):
        assert signer_from_config({"MAIL_FROM": "a@b.example"}) is None

    def test_without_bounce_address_the_envelope_is_mail_from(self, database_url, tmp_path, smtp):
        from tests.conftest import make_app

        app = make_app(database_url, tmp_path, smtp)
        deliver_now(
            app, "confirm", "x@example.com", {"confirm_url": "http://l/c", "valid_hours": 1}
        )
        [received] = smtp.received
        assert received.mail_from == "daily@bothsides.test"
        assert b"DKIM-Signature" not in received.data
        app.extensions["db"].dispose()


class TestBadKeys:
    def config(self, tmp_path, **extra):  # type: ignore[no-untyped-def]
        return {"MAIL_FROM": f"d@{DOMAIN}", **settings(tmp_path), **extra}

    def test_a_weak_key_is_refused(self, tmp_path):
        weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
        pem = weak.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        with pytest.raises(ConfigError, match="1024-bit"):
            signer_from_config(self.config(tmp_path, DKIM_PRIVATE_KEY=pem))

    @pytest.mark.parametrize(
        ("extra", "message"),
        [
            ({"DKIM_PRIVATE_KEY": "not a key"}, "not a PEM private key"),
            ({"DKIM_PRIVATE_KEY_FILE": "/nonexistent/key.pem"}, "cannot be read"),
            ({"DKIM_ED25519_PRIVATE_KEY_FILE": ""}, "set both"),
            ({"DKIM_SELECTOR": "bad selector!"}, "DKIM_SELECTOR must be"),
            ({"DKIM_SELECTOR": "", "DKIM_PRIVATE_KEY_FILE": ""}, "needs the RSA one"),
        ],
    )
    def test_bad_settings_are_clear_errors(self, tmp_path, extra, message):
        with pytest.raises(ConfigError, match=message):
            signer_from_config(self.config(tmp_path, **extra))

    def test_the_ed25519_file_must_hold_ed25519(self, tmp_path):
        rsa_path, _ = keys().write(tmp_path)
        with pytest.raises(ConfigError, match="must hold an Ed25519 key"):
            signer_from_config(self.config(tmp_path, DKIM_ED25519_PRIVATE_KEY_FILE=str(rsa_path)))

    def test_the_key_may_be_given_in_the_environment_on_one_line(self, tmp_path):
        pem = keys().rsa_pem.decode().replace("\n", "\\n")
        signer = signer_from_config(
            {"MAIL_FROM": f"d@{DOMAIN}", "DKIM_SELECTOR": "s2026", "DKIM_PRIVATE_KEY": pem}
        )
        assert signer is not None
        assert verify_all(signer.sign(message()), RECORDS) == [(b"rsa-sha256", True)]

    def test_the_command_line_stops_at_start_with_the_reason(self, tmp_path):
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(PROJECT_ROOT),  # this checkout's `newsletter`
            "NEWSLETTER_INSTANCE": str(tmp_path),
            "DATABASE_URL": f"sqlite:///{tmp_path}/x.db",
            "DKIM_SELECTOR": "s2026",
            "DKIM_PRIVATE_KEY": "-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----",
        }
        result = subprocess.run(
            [sys.executable, "-m", "newsletter", "db", "upgrade"],
            env=env,
            capture_output=True,
            text=True,
            cwd=tmp_path,
            timeout=60,
        )
        assert result.returncode == 1
        assert "DKIM private key is not a PEM private key" in result.stderr
        assert "Traceback" not in result.stderr


class TestVerp:
    def test_round_trip_and_case_insensitive(self):
        address = return_path(BOUNCES, TEST_SECRET, 4321)
        assert address.startswith("bounces+4321.") and address.endswith("@bounces.bothsides.test")
        assert len(address.partition("@")[0]) <= 40
        assert delivery_of(address, BOUNCES, TEST_SECRET) == 4321
        assert delivery_of(f"<{address.upper()}>", BOUNCES, TEST_SECRET) == 4321

    def test_forged_tokens_are_ignored_and_logged(self, caplog):
        genuine = return_path(BOUNCES, TEST_SECRET, 7)
        forged = genuine.replace("bounces+7.", "bounces+8.")
        with caplog.at_level(logging.WARNING, logger="newsletter.deliverability.verp"):
            assert delivery_of(forged, BOUNCES, TEST_SECRET) is None
            assert delivery_of(genuine, BOUNCES, "another secret" * 3) is None
        assert len([r for r in caplog.records if "does not verify" in r.message]) == 2

    @pytest.mark.parametrize(
        "address",
        ["reader@example.com", "bounces@bounces.bothsides.test", "bounces+7.x@elsewhere.test", ""],
    )
    def test_other_addresses_name_no_delivery(self, address):
        assert delivery_of(address, BOUNCES, TEST_SECRET) is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ("e42", "paid", "Both Sides Daily <daily.example.com>", "bsd"),
            "e42:paid:daily.example.com:bsd",
        ),
        (("e1", "free", "no brackets: here", "a:b"), "e1:free:no-brackets-here:a-b"),
        (("e1", "free", "<>", ""), "e1:free:x:x"),
    ],
)
def test_feedback_id_has_four_clean_fields(args, expected):
    from newsletter.mail.message import feedback_id

    assert feedback_id(*args) == expected
