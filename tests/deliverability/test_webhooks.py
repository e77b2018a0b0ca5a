"""The four providers' webhooks over HTTP: real signatures (RSA for SNS, HMAC for Mailgun,
ECDSA for SendGrid, basic auth for Postmark); each event suppresses the right reader
once; forged, replayed or unconfigured requests store nothing."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import select

from newsletter.deliverability.models import ReceivedReport, ReportKind
from newsletter.deliverability.providers.ses import allowed_sns_url
from newsletter.readers.models import Reader, ReaderStatus, Suppression
from tests.deliverability import signing
from tests.deliverability.conftest import add_reader
from tests.deliverability.signing import (
    MAILGUN_KEY,
    POSTMARK_PASSWORD,
    POSTMARK_USER,
    TOPIC,
    SendgridKeys,
    SnsServer,
)

SENDGRID = SendgridKeys()


@pytest.fixture(scope="module")
def sns() -> Iterator[SnsServer]:
    server = SnsServer()
    yield server
    server.stop()


@pytest.fixture
def app_settings(sns: SnsServer) -> dict[str, Any]:
    return {
        "SES_TOPIC_ARNS": f"arn:aws:sns:eu-west-1:123456789012:other,{TOPIC}",
        "SNS_TEST_URL_BASE": sns.base,
        "POSTMARK_WEBHOOK_USER": POSTMARK_USER,
        "POSTMARK_WEBHOOK_PASSWORD": POSTMARK_PASSWORD,
        "MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY,
        "SENDGRID_WEBHOOK_PUBLIC_KEY": SENDGRID.public,
    }


def reader(app: Flask, reader_id: int) -> Reader:
    with app.extensions["db"].session() as session:
        found = session.get(Reader, reader_id)
        assert found is not None
        return found


def reports(app: Flask) -> list[ReceivedReport]:
    with app.extensions["db"].session() as session:
        return list(session.scalars(select(ReceivedReport).order_by(ReceivedReport.id)))


def post(client: FlaskClient, path: str, body: bytes, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
    return client.post(
        path, data=body, headers={"Content-Type": "application/json", **(headers or {})}
    )


class TestSes:
    @pytest.mark.parametrize("version", ["1", "2"])
    def test_a_permanent_bounce_suppresses_once(
        self, app: Flask, client: FlaskClient, sns: SnsServer, version: str
    ) -> None:
        reader_id = add_reader(app, "gone@example.com")
        body = sns.notification(signing.ses_bounce("gone@example.com"), version)
        first = post(client, "/webhooks/ses", body)
        assert first.status_code == 200, first.get_data(as_text=True)
        assert first.json == {"received": 1, "recorded": 1}
        assert reader(app, reader_id).status == ReaderStatus.BOUNCED
        again = post(client, "/webhooks/ses", body)
        assert again.json == {"received": 1, "duplicate": 1}
        (row,) = reports(app)
        assert (row.source, row.kind, row.event_id) == (
            "ses",
            ReportKind.HARD_BOUNCE,
            "fb-1/gone@example.com",
        )
        assert "550 5.1.1" in row.diagnostic

    def test_a_complaint_unsubscribes(
        self, app: Flask, client: FlaskClient, sns: SnsServer
    ) -> None:
        reader_id = add_reader(app, "angry@example.com")
        response = post(
            client, "/webhooks/ses", sns.notification(signing.ses_complaint("angry@example.com"))
        )
        assert response.status_code == 200
        found = reader(app, reader_id)
        assert (found.status, found.suppression) == (
            ReaderStatus.UNSUBSCRIBED,
            Suppression.COMPLAINED,
        )

    def test_a_transient_bounce_is_soft(
        self, app: Flask, client: FlaskClient, sns: SnsServer
    ) -> None:
        reader_id = add_reader(app, "full@example.com")
        body = sns.notification(signing.ses_bounce("full@example.com", permanent=False))
        assert post(client, "/webhooks/ses", body).json == {"received": 1, "recorded": 1}
        assert reader(app, reader_id).suppression is None
        assert reports(app)[0].kind == ReportKind.SOFT_BOUNCE

    def test_the_certificate_is_fetched_once(
        self, app: Flask, client: FlaskClient, sns: SnsServer
    ) -> None:
        before = sns.cert_fetches
        for n in range(3):
            event = signing.ses_bounce(f"r{n}@example.com", feedback=f"fb-{n}")
            assert post(client, "/webhooks/ses", sns.notification(event)).status_code == 200
        assert sns.cert_fetches == before + 1

    def test_the_subscription_is_confirmed(
        self, app: Flask, client: FlaskClient, sns: SnsServer
    ) -> None:
        subscribe = sns.base + "?Action=ConfirmSubscription&TopicArn=t&Token=abc123"
        message = sns.sign(
            {
                "Type": "SubscriptionConfirmation",
                "MessageId": "m-1",
                "Token": "abc123",
                "TopicArn": TOPIC,
                "Message": "You have chosen to subscribe to the topic.",
                "SubscribeURL": subscribe,
                "Timestamp": "2026-12-02T12:00:00.000Z",
            }
        )
        response = post(client, "/webhooks/ses", json.dumps(message).encode())
        assert response.status_code == 200 and response.json == {"confirmed": True}
        assert "/?Action=ConfirmSubscription&TopicArn=t&Token=abc123" in sns.fetched

    def test_forgeries_store_nothing(self, app: Flask, client: FlaskClient, sns: SnsServer) -> None:
        reader_id = add_reader(app, "gone@example.com")
        good = json.loads(sns.notification(signing.ses_bounce("gone@example.com")))
        other_key = SnsServer()  # signed with a key that is not the certificate's
        try:
            wrong_key = {**other_key.sign({**good}), "SigningCertURL": sns.cert_url}
        finally:
            other_key.stop()
        tampered = {**good, "Message": good["Message"].replace("gone@", "other@")}
        foreign_cert = {**good, "SigningCertURL": "https://evil.example/cert.pem"}
        other_topic = sns.sign({**good, "TopicArn": "arn:aws:sns:us-east-1:999:x"})
        v3 = {**good, "SignatureVersion": "3"}
        for forged in (wrong_key, tampered, foreign_cert, other_topic, v3):
            response = post(client, "/webhooks/ses", json.dumps(forged).encode())
            assert response.status_code == 403, forged
        assert reports(app) == []
        assert reader(app, reader_id).suppression is None

    def test_a_subscribe_url_elsewhere_is_not_fetched(
        self, app: Flask, client: FlaskClient, sns: SnsServer
    ) -> None:
        message = sns.sign(
            {
                "Type": "SubscriptionConfirmation",
                "MessageId": "m-2",
                "Token": "t",
                "TopicArn": TOPIC,
                "Message": "subscribe",
                "SubscribeURL": "https://evil.example/?Action=ConfirmSubscription",
                "Timestamp": "2026-12-02T12:00:00.000Z",
            }
        )
        assert post(client, "/webhooks/ses", json.dumps(message).encode()).status_code == 403

    def test_malformed_is_400(self, client: FlaskClient) -> None:
        assert post(client, "/webhooks/ses", b"{not json").status_code == 400
        assert post(client, "/webhooks/ses", b'{"Type": "Nope"}').status_code == 400


@pytest.mark.parametrize(
    "url",
    [
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.eu-central-1.amazonaws.com/x.pem",
        "https://sns.cn-north-1.amazonaws.com.cn/x.pem",
    ],
)
def test_amazon_certificate_urls_are_allowed(url: str) -> None:
    assert allowed_sns_url(url, pem=True)


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com.evil.example/x.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
        "https://user@sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com:8443/x.pem",
        "https://sns.us-east-1.amazonaws.com/x.txt",
        "https://s3.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com@evil.example/x.pem",
        "file:///etc/passwd.pem",
    ],
)
def test_other_certificate_urls_are_refused(url: str) -> None:
    assert not allowed_sns_url(url, pem=True)


class TestPostmark:
    def test_a_hard_bounce_suppresses_once(self, app: Flask, client: FlaskClient) -> None:
        reader_id = add_reader(app, "gone@example.com")
        body = json.dumps(signing.postmark_bounce("gone@example.com")).encode()
        assert post(client, "/webhooks/postmark", body, signing.postmark_auth()).json == {
            "received": 1,
            "recorded": 1,
        }
        assert reader(app, reader_id).suppression == Suppression.BOUNCED
        again = post(client, "/webhooks/postmark", body, signing.postmark_auth())
        assert again.json == {"received": 1, "duplicate": 1}

    def test_a_spam_complaint(self, app: Flask, client: FlaskClient) -> None:
        reader_id = add_reader(app, "angry@example.com")
        body = json.dumps(signing.postmark_bounce("angry@example.com", "SpamComplaint")).encode()
        assert post(client, "/webhooks/postmark", body, signing.postmark_auth()).status_code == 200
        assert reader(app, reader_id).suppression == Suppression.COMPLAINED

    def test_a_soft_bounce_and_an_auto_reply(self, app: Flask, client: FlaskClient) -> None:
        reader_id = add_reader(app, "away@example.com")
        soft = signing.postmark_bounce("away@example.com", "SoftBounce", event_id=1)
        auto = signing.postmark_bounce("away@example.com", "AutoResponder", event_id=2)
        for event in (soft, auto):
            post(client, "/webhooks/postmark", json.dumps(event).encode(), signing.postmark_auth())
        assert [r.kind for r in reports(app)] == [ReportKind.SOFT_BOUNCE]
        assert reader(app, reader_id).suppression is None

    @pytest.mark.parametrize(
        "headers",
        [
            {},
            signing.postmark_auth(password="wrong"),
            signing.postmark_auth(user="other"),
            {"Authorization": "Basic !!!"},
            {"Authorization": "Bearer x"},
        ],
    )
    def test_without_the_password_nothing_is_stored(
        self, app: Flask, client: FlaskClient, headers: dict[str, str]
    ) -> None:
        reader_id = add_reader(app, "gone@example.com")
        body = json.dumps(signing.postmark_bounce("gone@example.com")).encode()
        response = post(client, "/webhooks/postmark", body, headers)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")
        assert reports(app) == [] and reader(app, reader_id).suppression is None

    def test_malformed_is_400(self, client: FlaskClient) -> None:
        for body in (b"[1]", b'{"RecordType": "Bounce", "Type": "HardBounce", "ID": 1}'):
            assert (
                post(client, "/webhooks/postmark", body, signing.postmark_auth()).status_code == 400
            )


class TestMailgun:
    def test_a_permanent_failure_suppresses_once(self, app: Flask, client: FlaskClient) -> None:
        reader_id = add_reader(app, "gone@example.com")
        event = signing.mailgun_failed("gone@example.com")
        assert post(client, "/webhooks/mailgun", signing.mailgun_body(event)).json == {
            "received": 1,
            "recorded": 1,
        }
        assert reader(app, reader_id).suppression == Suppression.BOUNCED
        # Mailgun retrying the same event signs it afresh: a duplicate, nothing changes.
        again = post(client, "/webhooks/mailgun", signing.mailgun_body(event))
        assert again.json == {"received": 1, "duplicate": 1}
        assert "550" in reports(app)[0].diagnostic

    def test_temporary_and_complained(self, app: Flask, client: FlaskClient) -> None:
        full = add_reader(app, "full@example.com")
        angry = add_reader(app, "angry@example.com")
        post(
            client,
            "/webhooks/mailgun",
            signing.mailgun_body(
                signing.mailgun_failed("full@example.com", permanent=False, event_id="t1")
            ),
        )
        post(
            client,
            "/webhooks/mailgun",
            signing.mailgun_body(signing.mailgun_complained("angry@example.com")),
        )
        assert reader(app, full).suppression is None
        assert reader(app, angry).suppression == Suppression.COMPLAINED

    def test_a_replayed_token_is_refused(self, app: Flask, client: FlaskClient) -> None:
        add_reader(app, "gone@example.com")
        body = signing.mailgun_body(signing.mailgun_failed("other@example.com"), token="t" * 50)
        assert post(client, "/webhooks/mailgun", body).status_code == 200
        replay = signing.mailgun_body(
            signing.mailgun_failed("gone@example.com", event_id="mg-2"), token="t" * 50
        )
        assert post(client, "/webhooks/mailgun", replay).status_code == 403
        assert [r.recipient for r in reports(app)] == ["other@example.com"]

    def test_forged_or_stale_store_nothing(self, app: Flask, client: FlaskClient) -> None:
        reader_id = add_reader(app, "gone@example.com")
        event = signing.mailgun_failed("gone@example.com")
        forged = signing.mailgun_body(event, key="not-the-key")
        stale = signing.mailgun_body(event, timestamp=int(time.time()) - 3600)
        unsigned = json.dumps({"event-data": event}).encode()
        for body in (forged, stale, unsigned):
            assert post(client, "/webhooks/mailgun", body).status_code == 403
        assert reports(app) == [] and reader(app, reader_id).suppression is None

    def test_malformed_is_400(self, client: FlaskClient) -> None:
        body = signing.mailgun_body({"event": "failed", "severity": "permanent"})
        assert post(client, "/webhooks/mailgun", body).status_code == 400


class TestSendgrid:
    def batch(self, *events: dict[str, Any]) -> bytes:
        return json.dumps(list(events)).encode()

    def test_a_batch_of_events(self, app: Flask, client: FlaskClient) -> None:
        gone = add_reader(app, "gone@example.com")
        blocked = add_reader(app, "blocked@example.com")
        angry = add_reader(app, "angry@example.com")
        dropped = add_reader(app, "dropped@example.com")
        body = self.batch(
            signing.sendgrid_event(
                "gone@example.com",
                "bounce",
                "sg-1",
                type="bounce",
                status="5.1.1",
                reason="550 unknown user",
            ),
            signing.sendgrid_event(
                "blocked@example.com", "bounce", "sg-2", type="blocked", status="4.0.0"
            ),
            signing.sendgrid_event("angry@example.com", "spamreport", "sg-3"),
            signing.sendgrid_event(
                "dropped@example.com", "dropped", "sg-4", reason="Bounced Address"
            ),
            signing.sendgrid_event("gone@example.com", "delivered", "sg-5"),
            signing.sendgrid_event("gone@example.com", "open", "sg-6"),
        )
        response = post(client, "/webhooks/sendgrid", body, SENDGRID.headers(body))
        assert response.status_code == 200, response.get_data(as_text=True)
        assert response.json == {"received": 4, "recorded": 4}
        assert reader(app, gone).suppression == Suppression.BOUNCED
        assert reader(app, blocked).suppression is None
        assert reader(app, angry).suppression == Suppression.COMPLAINED
        assert reader(app, dropped).suppression == Suppression.BOUNCED
        again = post(client, "/webhooks/sendgrid", body, SENDGRID.headers(body))
        assert again.json == {"received": 4, "duplicate": 4}

    def test_forged_or_stale_store_nothing(self, app: Flask, client: FlaskClient) -> None:
        reader_id = add_reader(app, "gone@example.com")
        body = self.batch(signing.sendgrid_event("gone@example.com", "bounce", "sg-1"))
        other = SendgridKeys()
        cases = [
            other.headers(body),
            SENDGRID.headers(body + b" "),
            SENDGRID.headers(body, timestamp=int(time.time()) - 3600),
            {},
            {**SENDGRID.headers(body), "X-Twilio-Email-Event-Webhook-Signature": "%%%"},
        ]
        for headers in cases:
            assert post(client, "/webhooks/sendgrid", body, headers).status_code == 403
        assert reports(app) == [] and reader(app, reader_id).suppression is None

    def test_malformed_is_400(self, client: FlaskClient) -> None:
        for body in (b'{"event": "bounce"}', b"[1]", b'[{"event": "bounce", "email": "a@b.c"}]'):
            assert (
                post(client, "/webhooks/sendgrid", body, SENDGRID.headers(body)).status_code == 400
            )


@pytest.mark.parametrize("path", ["ses", "postmark", "mailgun", "sendgrid"])
def test_an_unconfigured_provider_is_404(
    database_url: str, tmp_path: Any, smtp: Any, path: str
) -> None:
    from tests.conftest import make_app

    app = make_app(database_url, tmp_path, smtp)
    try:
        response = app.test_client().post(f"/webhooks/{path}", data=b"{}")
        assert response.status_code == 404
    finally:
        app.extensions["click_log"].close()
        app.extensions["db"].dispose()
