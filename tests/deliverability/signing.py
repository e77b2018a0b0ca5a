"""Signed provider requests, made the way each provider makes them, with keys the tests
generate: an SNS signing certificate served by a local HTTP server, a Mailgun signing
key, a SendGrid ECDSA P-256 key pair, Postmark's basic auth."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

from newsletter.deliverability.providers.ses import canonical

TOPIC = "arn:aws:sns:us-east-1:123456789012:ses-bounces"
MAILGUN_KEY = "mailgun-signing-key-" + "a" * 20
POSTMARK_USER, POSTMARK_PASSWORD = "postmark", "correct horse battery staple"


def rsa_certificate() -> tuple[rsa.RSAPrivateKey, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


class SnsServer:
    """Stands in for sns.<region>.amazonaws.com: serves the signing certificate and
    records the subscribe URLs fetched."""

    def __init__(self) -> None:
        self.key, self.pem = rsa_certificate()
        self.fetched: list[str] = []
        self.cert_fetches = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                outer.fetched.append(self.path)
                if self.path.endswith(".pem"):
                    outer.cert_fetches += 1
                    body = outer.pem
                else:
                    body = b"<ConfirmSubscriptionResponse/>"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}/"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def cert_url(self) -> str:
        return self.base + "SimpleNotificationService-test.pem"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def sign(self, message: dict[str, Any], version: str = "2") -> dict[str, Any]:
        message = {**message, "SignatureVersion": version, "SigningCertURL": self.cert_url}
        digest = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 (SNS v1)
        signature = self.key.sign(canonical(message), padding.PKCS1v15(), digest)
        return {**message, "Signature": base64.b64encode(signature).decode()}

    def notification(self, event: dict[str, Any], version: str = "2", **extra: Any) -> bytes:
        message = {
            "Type": "Notification",
            "MessageId": secrets.token_hex(8),
            "TopicArn": TOPIC,
            "Message": json.dumps(event),
            "Timestamp": "2026-12-02T12:00:00.000Z",
            "UnsubscribeURL": self.base + "?Action=Unsubscribe",
            **extra,
        }
        return json.dumps(self.sign(message, version)).encode()


def ses_bounce(
    email: str, *, permanent: bool = True, feedback: str = "fb-1", message_id: str | None = None
) -> dict[str, Any]:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "feedbackId": feedback,
            "bounceType": "Permanent" if permanent else "Transient",
            "bounceSubType": "General" if permanent else "MailboxFull",
            "bouncedRecipients": [
                {
                    "emailAddress": email,
                    "action": "failed",
                    "status": "5.1.1" if permanent else "4.2.2",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown"
                    if permanent
                    else "smtp; 452 4.2.2 mailbox full",
                }
            ],
            "timestamp": "2026-12-02T11:59:58.000Z",
        },
        "mail": {
            "messageId": "0100018c-ses-id",
            "commonHeaders": {"messageId": message_id} if message_id else {},
        },
    }


def ses_complaint(email: str, feedback: str = "fb-c1") -> dict[str, Any]:
    return {
        "notificationType": "Complaint",
        "complaint": {
            "feedbackId": feedback,
            "complainedRecipients": [{"emailAddress": email}],
            "complaintFeedbackType": "abuse",
            "timestamp": "2026-12-02T11:59:58.000Z",
        },
        "mail": {"messageId": "0100018c-ses-id"},
    }


def postmark_auth(user: str = POSTMARK_USER, password: str = POSTMARK_PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


def postmark_bounce(email: str, kind: str = "HardBounce", event_id: int = 42) -> dict[str, Any]:
    record = "SpamComplaint" if kind == "SpamComplaint" else "Bounce"
    return {
        "RecordType": record,
        "ID": event_id,
        "Type": kind,
        "TypeCode": 1,
        "Name": "Hard bounce",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message.",
        "Details": "smtp;550 5.1.1 The email account does not exist",
        "Email": email,
        "From": "daily@bothsides.test",
        "BouncedAt": "2026-12-02T11:59:58.1234567Z",
        "Inactive": True,
        "CanActivate": True,
        "Subject": "Today's edition",
    }


def mailgun_body(
    event_data: dict[str, Any],
    *,
    key: str = MAILGUN_KEY,
    timestamp: int | None = None,
    token: str | None = None,
) -> bytes:
    timestamp = int(time.time()) if timestamp is None else timestamp
    token = token or secrets.token_hex(25)
    signature = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256)
    return json.dumps(
        {
            "signature": {
                "timestamp": str(timestamp),
                "token": token,
                "signature": signature.hexdigest(),
            },
            "event-data": event_data,
        }
    ).encode()


def mailgun_failed(
    email: str, *, permanent: bool = True, event_id: str = "mg-1", message_id: str | None = None
) -> dict[str, Any]:
    return {
        "event": "failed",
        "id": event_id,
        "timestamp": 1764676798.37,
        "severity": "permanent" if permanent else "temporary",
        "reason": "bounce" if permanent else "generic",
        "recipient": email,
        "delivery-status": {
            "code": 550 if permanent else 452,
            "message": "5.1.1 user unknown" if permanent else "4.2.2 mailbox full",
        },
        "message": {"headers": {"message-id": message_id or "20261202.abc@mg.bothsides.test"}},
    }


def mailgun_complained(email: str, event_id: str = "mg-c1") -> dict[str, Any]:
    return {"event": "complained", "id": event_id, "timestamp": 1764676798.0, "recipient": email}


class SendgridKeys:
    def __init__(self) -> None:
        self.private = ec.generate_private_key(ec.SECP256R1())
        der = self.private.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        self.public = base64.b64encode(der).decode()

    def headers(self, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = self.private.sign(ts.encode() + body, ec.ECDSA(hashes.SHA256()))
        return {
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": ts,
            "Content-Type": "application/json",
        }


def sendgrid_event(email: str, event: str, event_id: str, **extra: Any) -> dict[str, Any]:
    return {
        "email": email,
        "timestamp": 1764676798,
        "smtp-id": "<14c5d75ce93.dfd.64b469@ismtpd-555>",
        "event": event,
        "sg_event_id": event_id,
        "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
        **extra,
    }
