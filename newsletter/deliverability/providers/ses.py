"""Amazon SES through SNS: every POST is an SNS message (JSON), signed by SNS.

The signature (base64) is RSA over the message's canonical string: for a Notification
the values of Message, MessageId, Subject (when present), Timestamp, TopicArn and Type,
for a (Un)SubscriptionConfirmation those of Message, MessageId, SubscribeURL, Timestamp,
Token, TopicArn and Type, each as "Name\\nvalue\\n". SignatureVersion 1 hashes it with
SHA-1, 2 with SHA-256. The signing certificate is fetched from `SigningCertURL` only when
that is `https://sns.<region>.amazonaws.com/….pem` (the host check is what makes the key
Amazon's: it is served over TLS by Amazon's own host), and kept per URL. A subscription
is confirmed by fetching its `SubscribeURL`, under the same host rule.

The Notification's Message is SES's event: `notificationType` (or `eventType`, for
configuration-set event publishing) Bounce (bounceType Permanent: hard; Transient or
Undetermined: soft) or Complaint, one report per recipient named.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from newsletter.deliverability.models import ReportKind
from newsletter.deliverability.providers import Malformed, Unauthentic, field, iso_time, obj
from newsletter.deliverability.reports import BounceReport

NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
CONFIRMATION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
CONFIRMATIONS = ("SubscriptionConfirmation", "UnsubscribeConfirmation")
_SNS_HOST = re.compile(r"sns\.[a-z0-9-]{1,30}\.amazonaws\.com(\.cn)?")
MAX_CERTIFICATE_BYTES = 64 * 1024
FETCH_TIMEOUT_SECONDS = 10


def allowed_sns_url(url: str, *, test_base: str | None = None, pem: bool = False) -> bool:
    """Whether `url` is Amazon SNS's own: https, host sns.<region>.amazonaws.com, no port,
    no user. `test_base` (tests only) is one more base URL allowed."""
    if test_base is not None and url.startswith(test_base) and len(url) < 2048:
        return True
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    return (
        parts.scheme == "https"
        and parts.username is None
        and port is None
        and parts.hostname is not None
        and parts.netloc == parts.hostname
        and _SNS_HOST.fullmatch(parts.hostname) is not None
        and (not pem or parts.path.endswith(".pem"))
        and len(url) < 2048
    )


def fetch(url: str, limit: int = MAX_CERTIFICATE_BYTES) -> bytes:
    """GET `url` (already checked by `allowed_sns_url`), at most `limit` bytes."""
    request = urllib.request.Request(url, headers={"User-Agent": "both-sides-daily"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT_SECONDS) as response:  # noqa: S310
        data: bytes = response.read(limit + 1)
    if len(data) > limit:
        raise Unauthentic("the signing certificate is too large")
    return data


class Certificates:
    """SNS signing keys by certificate URL, fetched once each (a few URLs in use)."""

    MAX_ENTRIES = 32

    def __init__(
        self, fetcher: Callable[[str], bytes] = fetch, test_base: str | None = None
    ) -> None:
        self.fetcher = fetcher
        self.test_base = test_base
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        self._lock = threading.Lock()

    def key(self, url: str) -> rsa.RSAPublicKey:
        if not allowed_sns_url(url, test_base=self.test_base, pem=True):
            raise Unauthentic("SigningCertURL is not an Amazon SNS URL")
        with self._lock:
            found = self._keys.get(url)
        if found is not None:
            return found
        try:
            certificate = x509.load_pem_x509_certificate(self.fetcher(url))
        except (OSError, ValueError) as exc:
            raise Unauthentic(f"the signing certificate could not be read: {exc}") from None
        key = certificate.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise Unauthentic("the signing certificate is not an RSA certificate")
        with self._lock:
            if len(self._keys) >= self.MAX_ENTRIES:
                self._keys.clear()
            self._keys[url] = key
        return key


def canonical(message: Mapping[str, Any]) -> bytes:
    kind = message.get("Type")
    names = CONFIRMATION_FIELDS if kind in CONFIRMATIONS else NOTIFICATION_FIELDS
    lines = []
    for name in names:
        if name == "Subject" and message.get(name) is None:
            continue
        lines.append(f"{name}\n{field(message, name, size=300_000)}\n")
    return "".join(lines).encode()


def verify(message: Any, certificates: Certificates, topics: frozenset[str]) -> Mapping[str, Any]:
    """The SNS message when it is signed by SNS for one of `topics`."""
    body = obj(message, "body")
    kind = body.get("Type")
    if kind not in (*CONFIRMATIONS, "Notification"):
        raise Malformed("'Type' is not an SNS message type")
    version = body.get("SignatureVersion")
    if version not in ("1", "2"):
        raise Unauthentic("SignatureVersion must be 1 or 2")
    if field(body, "TopicArn", size=300) not in topics:
        raise Unauthentic("the topic is not one of SES_TOPIC_ARNS")
    try:
        signature = base64.b64decode(field(body, "Signature", size=2000), validate=True)
    except (binascii.Error, Malformed):
        raise Unauthentic("malformed signature") from None
    key = certificates.key(field(body, "SigningCertURL", size=2000))
    digest = hashes.SHA1() if version == "1" else hashes.SHA256()  # noqa: S303 (SNS's v1)
    try:
        key.verify(signature, canonical(body), padding.PKCS1v15(), digest)
    except (InvalidSignature, ValueError):
        raise Unauthentic("signature does not match") from None
    return body


def confirm_subscription(
    message: Mapping[str, Any], fetcher: Callable[[str], bytes], test_base: str | None = None
) -> None:
    url = field(message, "SubscribeURL", size=2000)
    if not allowed_sns_url(url, test_base=test_base):
        raise Unauthentic("SubscribeURL is not an Amazon SNS URL")
    fetcher(url)


def _message_id(mail: Mapping[str, Any]) -> str | None:
    common = mail.get("commonHeaders")
    if isinstance(common, dict) and isinstance(common.get("messageId"), str):
        return str(common["messageId"])[:255]
    headers = mail.get("headers")
    if isinstance(headers, list):
        for header in headers:
            if (
                isinstance(header, dict)
                and str(header.get("name", "")).lower() == "message-id"
                and isinstance(header.get("value"), str)
            ):
                return str(header["value"])[:255]
    return None


def parse(notification: Mapping[str, Any]) -> list[BounceReport]:
    """The reports in a verified Notification's SES event."""
    try:
        event = json.loads(field(notification, "Message", size=300_000))
    except ValueError:
        return []  # a plain-text message on the topic (a test publish): nothing to do
    if not isinstance(event, dict):
        return []
    kind_name = event.get("notificationType") or event.get("eventType")
    mail = event.get("mail")
    message_id = _message_id(mail) if isinstance(mail, dict) else None
    reports = []
    if kind_name == "Bounce":
        bounce = obj(event.get("bounce"), "bounce")
        permanent = bounce.get("bounceType") == "Permanent"
        kind = ReportKind.HARD_BOUNCE if permanent else ReportKind.SOFT_BOUNCE
        feedback = field(bounce, "feedbackId", size=200)
        recipients = bounce.get("bouncedRecipients")
        for recipient in recipients if isinstance(recipients, list) else []:
            item = obj(recipient, "bouncedRecipients")
            email = field(item, "emailAddress", size=254)
            said = " ".join(
                field(item, name, required=False, size=500) for name in ("status", "diagnosticCode")
            ).strip()
            diagnostic = said or f"{bounce.get('bounceType')} {bounce.get('bounceSubType')}"
            reports.append(
                BounceReport(
                    source="ses",
                    event_id=f"{feedback}/{email}"[:255],
                    kind=kind,
                    recipient=email,
                    diagnostic=diagnostic[:1000],
                    message_id=message_id,
                    occurred_at=iso_time(bounce.get("timestamp")),
                )
            )
    elif kind_name == "Complaint":
        complaint = obj(event.get("complaint"), "complaint")
        if complaint.get("complaintFeedbackType") == "not-spam":
            return []
        feedback = field(complaint, "feedbackId", size=200)
        recipients = complaint.get("complainedRecipients")
        feedback_type = field(complaint, "complaintFeedbackType", required=False, size=100)
        for recipient in recipients if isinstance(recipients, list) else []:
            email = field(obj(recipient, "complainedRecipients"), "emailAddress", size=254)
            reports.append(
                BounceReport(
                    source="ses",
                    event_id=f"{feedback}/{email}"[:255],
                    kind=ReportKind.COMPLAINT,
                    recipient=email,
                    diagnostic=f"complaint {feedback_type}".strip(),
                    message_id=message_id,
                    occurred_at=iso_time(complaint.get("timestamp")),
                )
            )
    return reports
