"""Mailgun: the body is `{"signature": {timestamp, token, signature}, "event-data": …}`;
the signature is the hex HMAC-SHA256 of timestamp + token under the webhook signing key.
The timestamp must be within the tolerance and each token is accepted once (the caller
records it), so a captured request cannot be replayed. Events: `failed` (severity
permanent or temporary) and `complained`."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from newsletter.deliverability.models import ReportKind
from newsletter.deliverability.providers import (
    Unauthentic,
    epoch_time,
    field,
    obj,
)
from newsletter.deliverability.reports import BounceReport

_TIMESTAMP = re.compile(r"[1-9][0-9]{0,11}")
_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,200}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


def verify(payload: Any, key: str, *, now: float, tolerance: int) -> str:
    """Check the signature and its age; the token, for the caller to record once."""
    body = obj(payload, "body")
    signed = body.get("signature")
    if not isinstance(signed, dict):
        raise Unauthentic("no signature")
    timestamp, token, signature = (signed.get(k) for k in ("timestamp", "token", "signature"))
    if not (
        isinstance(timestamp, str | int)
        and _TIMESTAMP.fullmatch(str(timestamp))
        and isinstance(token, str)
        and _TOKEN.fullmatch(token)
        and isinstance(signature, str)
        and _SIGNATURE.fullmatch(signature)
    ):
        raise Unauthentic("malformed signature")
    expected = hmac.new(key.encode(), f"{timestamp}{token}".encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise Unauthentic("signature does not match")
    if abs(now - int(timestamp)) > tolerance:
        raise Unauthentic("timestamp outside the tolerance")
    return token


def parse(payload: Any) -> list[BounceReport]:
    data: Mapping[str, Any] = obj(obj(payload, "body").get("event-data"), "event-data")
    event = field(data, "event", size=50)
    if event == "complained":
        kind = ReportKind.COMPLAINT
    elif event == "failed":
        severity = field(data, "severity", size=50)
        kind = ReportKind.HARD_BOUNCE if severity == "permanent" else ReportKind.SOFT_BOUNCE
    else:
        return []
    status = data.get("delivery-status")
    diagnostic = ""
    if isinstance(status, dict):
        code = status.get("code")
        text = status.get("message") or status.get("description") or ""
        diagnostic = (
            f"{code if isinstance(code, int | str) else ''} {text if isinstance(text, str) else ''}"
        )
    if not diagnostic.strip():
        diagnostic = field(data, "reason", required=False, size=200)
    message = data.get("message")
    headers = message.get("headers") if isinstance(message, dict) else None
    message_id = headers.get("message-id") if isinstance(headers, dict) else None
    return [
        BounceReport(
            source="mailgun",
            event_id=field(data, "id", size=255),
            kind=kind,
            recipient=field(data, "recipient", size=254),
            diagnostic=diagnostic.strip()[:1000],
            message_id=message_id[:255] if isinstance(message_id, str) else None,
            occurred_at=epoch_time(data.get("timestamp")),
        )
    ]
