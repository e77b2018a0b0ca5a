"""Postmark: the webhook URL carries HTTP basic auth (Postmark lets you set a user and
password on each webhook); one event per request, `RecordType` "Bounce" (its `Type` says
which kind) or "SpamComplaint"."""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from typing import Any

from newsletter.deliverability.models import ReportKind
from newsletter.deliverability.providers import Malformed, Unauthentic, field, iso_time, obj
from newsletter.deliverability.reports import BounceReport

# Postmark's bounce types that say the address is gone, and those that say "not now".
# The rest (auto-responders, subscribe requests, DMARC refusals of our own domain, ...)
# say nothing about the reader and are ignored.
HARD = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})
SOFT = frozenset({"SoftBounce", "Transient", "DnsError", "Blocked"})
COMPLAINT = frozenset({"SpamComplaint"})


def check_auth(header: str | None, user: str, password: str) -> None:
    """`Authorization: Basic …` must carry exactly the configured user and password."""
    if not header or not header.startswith("Basic "):
        raise Unauthentic("HTTP basic auth required")
    try:
        given = base64.b64decode(header[6:].strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise Unauthentic("unreadable basic auth") from None
    given_user, _, given_password = given.partition(":")
    ok_user = hmac.compare_digest(given_user.encode(), user.encode())
    ok_password = hmac.compare_digest(given_password.encode(), password.encode())
    if not (ok_user and ok_password):
        raise Unauthentic("wrong user or password")


def parse(payload: Any) -> list[BounceReport]:
    event: Mapping[str, Any] = obj(payload, "body")
    record = field(event, "RecordType", size=50)
    if record not in ("Bounce", "SpamComplaint"):
        return []  # deliveries, opens, clicks: nothing to act on
    kind_name = field(event, "Type", size=50)
    if kind_name in COMPLAINT or record == "SpamComplaint":
        kind = ReportKind.COMPLAINT
    elif kind_name in HARD:
        kind = ReportKind.HARD_BOUNCE
    elif kind_name in SOFT:
        kind = ReportKind.SOFT_BOUNCE
    else:
        return []
    event_id = event.get("ID")
    if isinstance(event_id, bool) or not isinstance(event_id, int | str) or not str(event_id):
        raise Malformed("'ID' must be a number")
    name = field(event, "Name", required=False, size=200)
    details = field(event, "Details", required=False, size=2000)
    return [
        BounceReport(
            source="postmark",
            event_id=f"{record}:{event_id}"[:255],
            kind=kind,
            recipient=field(event, "Email", size=254),
            diagnostic=f"{kind_name} ({name}): {details}" if details else f"{kind_name} ({name})",
            occurred_at=iso_time(event.get("BouncedAt")),
        )
    ]
