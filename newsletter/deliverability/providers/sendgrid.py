"""SendGrid's signed Event Webhook: `X-Twilio-Email-Event-Webhook-Signature` is a base64
ECDSA (P-256, SHA-256) signature of the `X-Twilio-Email-Event-Webhook-Timestamp` value
followed by the raw body, checked with the public key SendGrid shows (base64 DER, or PEM).
The body is a batch: a JSON array of events. `bounce` (type `bounce`: hard; `blocked`:
soft), `dropped` (for an address SendGrid already knows bounced or complained) and
`spamreport` are acted on; the rest is ignored."""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.deliverability.models import ReportKind
from newsletter.deliverability.providers import (
    Malformed,
    Unauthentic,
    epoch_time,
    field,
    obj,
)
from newsletter.deliverability.reports import BounceReport

_TIMESTAMP = re.compile(r"[1-9][0-9]{0,11}")
MAX_SIGNATURE_LENGTH = 200
# SendGrid's `dropped` reasons that mean the address bounced or complained before.
DROPPED = {
    "Bounced Address": ReportKind.HARD_BOUNCE,
    "Invalid": ReportKind.HARD_BOUNCE,
    "Spam Reporting Address": ReportKind.COMPLAINT,
}


def load_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The configured key: base64 DER (as SendGrid shows it) or PEM; P-256 only."""
    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_public_key(text.encode())
        else:
            key = serialization.load_der_public_key(base64.b64decode(text, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise ValueError(f"SENDGRID_WEBHOOK_PUBLIC_KEY is not a public key: {exc}") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise ValueError("SENDGRID_WEBHOOK_PUBLIC_KEY must be an ECDSA P-256 key")
    return key


def verify(
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    key: ec.EllipticCurvePublicKey,
    *,
    now: float,
    tolerance: int,
) -> None:
    if not signature or not timestamp or len(signature) > MAX_SIGNATURE_LENGTH:
        raise Unauthentic("signature headers missing")
    if not _TIMESTAMP.fullmatch(timestamp):
        raise Unauthentic("malformed timestamp")
    try:
        der = base64.b64decode(signature, validate=True)
    except binascii.Error:
        raise Unauthentic("malformed signature") from None
    try:
        key.verify(der, timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise Unauthentic("signature does not match") from None
    if abs(now - int(timestamp)) > tolerance:
        raise Unauthentic("timestamp outside the tolerance")


def _report(event: Mapping[str, Any]) -> BounceReport | None:
    name = field(event, "event", size=50)
    reason = field(event, "reason", required=False, size=1000)
    if name == "bounce":
        bounce_type = field(event, "type", required=False, size=50)
        kind = ReportKind.SOFT_BOUNCE if bounce_type == "blocked" else ReportKind.HARD_BOUNCE
    elif name == "dropped":
        found = DROPPED.get(reason)
        if found is None:
            return None
        kind = found
    elif name == "spamreport":
        kind = ReportKind.COMPLAINT
    else:
        return None
    status = field(event, "status", required=False, size=50)
    smtp_id = field(event, "smtp-id", required=False, size=255)
    return BounceReport(
        source="sendgrid",
        event_id=field(event, "sg_event_id", size=255),
        kind=kind,
        recipient=field(event, "email", size=254),
        diagnostic=" ".join(p for p in (name, status, reason) if p),
        message_id=smtp_id or None,
        occurred_at=epoch_time(event.get("timestamp")),
    )


def parse(payload: Any) -> list[BounceReport]:
    if not isinstance(payload, list):
        raise Malformed("the body must be a JSON array of events")
    reports = []
    for n, item in enumerate(payload):
        found = _report(obj(item, f"event {n}"))
        if found is not None:
            reports.append(found)
    return reports
