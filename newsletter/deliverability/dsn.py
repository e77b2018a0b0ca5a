"""Bounce and complaint reports that arrive as email: delivery status notifications
(RFC 3464, `multipart/report; report-type=delivery-status`), feedback reports (ARF,
RFC 5965, `report-type=feedback-report`), and the many MTAs' own formats, which
flufl.bounce recognises.

`parse_report` turns one raw message into `BounceReport`s, one per failed recipient; it
takes any bytes and never raises (an unreadable message gives no reports, for the caller
to set aside). The delivery comes from the VERP address the report was sent to (or the
enclosed original's Return-Path / the ARF Original-Mail-From), else from the original's
Message-ID, which `record_report` checks.
"""

from __future__ import annotations

import email
import email.policy
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass
from email.message import Message
from email.utils import parsedate_to_datetime

from flufl.bounce import all_failures

from newsletter.deliverability.models import ReportKind
from newsletter.deliverability.reports import BounceReport
from newsletter.deliverability.verp import delivery_of

log = logging.getLogger(__name__)

MAX_REPORT_BYTES = 10 * 1024 * 1024
# Headers a relay writes with the envelope recipient: the VERP address a bounce came to.
_ENVELOPE_HEADERS = ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To")
_STATUS = re.compile(r"\b([245])\.\d{1,3}\.\d{1,3}\b")
_ADDRESS = re.compile(r"[^\s<>@,;:\"]+@[^\s<>@,;:\"]+")


@dataclass(frozen=True)
class Verp:
    """How to read VERP addresses: BOUNCE_ADDRESS and the secret of its tokens."""

    bounce_address: str
    secret: str

    def delivery(self, candidates: Iterable[str | None]) -> int | None:
        if not self.bounce_address:
            return None
        for candidate in candidates:
            for address in _ADDRESS.findall(candidate or ""):
                found = delivery_of(address, self.bounce_address, self.secret)
                if found is not None:
                    return found
        return None


def _text(value: object) -> str:
    return " ".join(str(value).split()) if value is not None else ""


def _address(value: str) -> str:
    """The address of a DSN field such as `rfc822; a@b` (or a bare `<a@b>`)."""
    _, _, rest = value.rpartition(";")
    found = _ADDRESS.search(rest or value)
    return found.group(0).strip(".").lower() if found else ""


def _original(report: Message) -> Message | None:
    """The enclosed original message (or just its headers)."""
    for part in report.walk():
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global"):
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                return payload[0]
        if kind in ("text/rfc822-headers", "message/global-headers"):
            raw = part.get_payload(decode=True)
            if isinstance(raw, bytes):
                return email.message_from_bytes(raw)
    return None


def _status_blocks(report: Message) -> list[Message]:
    for part in report.walk():
        if part.get_content_type() in ("message/delivery-status", "message/global-delivery-status"):
            payload = part.get_payload()
            if isinstance(payload, list):
                return [p for p in payload if isinstance(p, Message)]
            if isinstance(payload, str):  # some MTAs' blocks arrive as one text payload
                return [email.message_from_string(b.strip()) for b in re.split(r"\n\s*\n", payload)]
    return []


def _when(report: Message) -> object:
    try:
        return parsedate_to_datetime(str(report["Date"])) if report["Date"] else None
    except (TypeError, ValueError, IndexError):
        return None


def _event_id(report: Message, fallback: str, recipient: str) -> str:
    base = _text(report["Message-ID"])[:200] or fallback
    return f"{base}/{recipient}"[:255]


def _delivery_status(report: Message, original: Message | None, common: dict) -> list[BounceReport]:
    out = []
    for block in _status_blocks(report):
        action = _text(block["Action"]).lower()
        recipient = _address(_text(block["Final-Recipient"])) or _address(
            _text(block["Original-Recipient"])
        )
        if not recipient or action not in ("failed", ""):
            continue  # delayed, delivered, relayed, expanded: nothing failed yet
        status = _text(block["Status"])
        found = _STATUS.search(status)
        if found is None or found.group(1) == "2":
            continue
        kind = ReportKind.HARD_BOUNCE if found.group(1) == "5" else ReportKind.SOFT_BOUNCE
        diagnostic = _text(block["Diagnostic-Code"]) or status
        out.append(
            BounceReport(
                kind=kind,
                recipient=recipient,
                diagnostic=f"{found.group(0)} {diagnostic}"[:500],
                event_id=_event_id(report, common["fallback"], recipient),
                **common["fields"],
            )
        )
    return out


def _feedback_fields(report: Message) -> Message | None:
    """The machine-readable part of an ARF report (its fields as headers)."""
    for part in report.walk():
        if part.get_content_type() != "message/feedback-report":
            continue
        payload = part.get_payload()
        if isinstance(payload, list):
            first = payload[0] if payload else None
            return first if isinstance(first, Message) else Message()
        raw = part.get_payload(decode=True)
        return email.message_from_bytes(raw if isinstance(raw, bytes) else b"")
    return None


def _feedback(report: Message, original: Message | None, common: dict) -> list[BounceReport]:
    fields = _feedback_fields(report)
    if fields is not None:
        kind = _text(fields["Feedback-Type"]).lower()
        if kind not in ("abuse", "fraud", "virus", "other", ""):
            return []  # not-spam, auth-failure: not a complaint about us
        recipient = _address(_text(fields["Original-Rcpt-To"])) or _address(
            _text(original["To"]) if original is not None else ""
        )
        if not recipient:
            return []
        agent = _text(fields["User-Agent"])[:100] or "a feedback loop"
        return [
            BounceReport(
                kind=ReportKind.COMPLAINT,
                recipient=recipient,
                diagnostic=f"complaint ({kind or 'abuse'}) from {agent}",
                event_id=_event_id(report, common["fallback"], recipient),
                **common["fields"],
            )
        ]
    return []


def _non_standard(report: Message, common: dict) -> list[BounceReport]:
    temporary, permanent = all_failures(report)
    out = []
    for kind, addresses in (
        (ReportKind.HARD_BOUNCE, permanent),
        (ReportKind.SOFT_BOUNCE, temporary),
    ):
        for raw in sorted(addresses):
            recipient = (
                raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
            ).lower()
            if "@" not in recipient or (kind is ReportKind.SOFT_BOUNCE and recipient in permanent):
                continue
            out.append(
                BounceReport(
                    kind=kind,
                    recipient=recipient,
                    diagnostic=f"{_text(report['Subject'])[:200]} (non-standard report)",
                    event_id=_event_id(report, common["fallback"], recipient),
                    **common["fields"],
                )
            )
    return out


def _parse(data: bytes, fallback_id: str, raw_ref: str | None, verp: Verp) -> list[BounceReport]:
    report = email.message_from_bytes(data)
    original = _original(report)
    candidates = [report.get(h) for h in _ENVELOPE_HEADERS]
    fields = _feedback_fields(report)
    if fields is not None:
        candidates.append(fields.get("Original-Mail-From"))
    if original is not None:
        candidates.append(original.get("Return-Path"))
    message_id = _text(original["Message-ID"]) if original is not None else ""
    common = {
        "fallback": fallback_id,
        "fields": {
            "source": "mailbox",
            "delivery_id": verp.delivery(candidates),
            "message_id": message_id[:255] or None,
            "occurred_at": _when(report),
            "raw_ref": raw_ref,
        },
    }
    content_type = report.get_content_type()
    report_type = (
        str(report.get_param("report-type") or "").lower()
        if content_type == "multipart/report"
        else ""
    )
    if report_type == "feedback-report":
        return _feedback(report, original, common)
    found = _delivery_status(report, original, common) if report_type == "delivery-status" else []
    return found or _non_standard(report, common)


def parse_report(
    data: bytes, *, fallback_id: str, verp: Verp, raw_ref: str | None = None
) -> list[BounceReport]:
    """The failures and complaints one raw message reports; [] when it reports none or
    cannot be read. `fallback_id` names the message when it has no Message-ID (e.g.
    folder, UIDVALIDITY and UID)."""
    if len(data) > MAX_REPORT_BYTES:
        return []
    try:
        return _parse(data, fallback_id, raw_ref, verp)
    except Exception:  # a report is outside input: whatever breaks a parser is "unreadable"
        log.warning("a bounce report could not be parsed (%s)", fallback_id, exc_info=True)
        return []
