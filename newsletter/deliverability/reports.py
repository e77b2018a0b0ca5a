"""The one way a bounce or complaint report enters the app, whatever brought it (a
provider's webhook, the bounce mailbox, a 5xx during the SMTP session).

`record_report` stores each (source, event_id) once: an insert that does nothing on
conflict with the unique pair, so a redelivered report, or the same report delivered twice
at once, changes nothing the second time (PostgreSQL makes the second insert wait for the
first transaction; SQLite has one writer). It then matches the report to our delivery
(the delivery id a VERP token names, else our Message-ID, else the reader by address),
applies the policy (`policy.py`) and checks the edition's rates (`rates.py`). It flushes
and never commits: the entrypoint does.
"""

from __future__ import annotations

import hmac
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from newsletter import metrics
from newsletter.db import table_of, upsert, utcnow
from newsletter.deliverability.models import ReceivedReport, ReportKind, WebhookToken
from newsletter.deliverability.policy import Policy, apply_to_reader
from newsletter.deliverability.rates import protect_edition
from newsletter.delivery.models import Delivery
from newsletter.readers.models import Reader, Suppression
from newsletter.tokens import MessageIds

__all__ = [
    "BounceReport",
    "OutcomeStatus",
    "ReportKind",
    "ReportOutcome",
    "claim_token",
    "record_report",
]

log = logging.getLogger(__name__)

# One-time tokens are kept this long (far past any signature tolerance).
TOKEN_RETENTION = timedelta(days=1)
SOURCES = frozenset({"ses", "postmark", "mailgun", "sendgrid", "mailbox", "smtp"})


@dataclass(frozen=True)
class BounceReport:
    source: str  # "ses" | "postmark" | "mailgun" | "sendgrid" | "mailbox" | "smtp"
    event_id: str  # unique within source (provider event id / report Message-ID): dedupe key
    kind: ReportKind
    recipient: str  # the address that bounced or complained
    diagnostic: str = ""  # status code + text in plain words
    delivery_id: int | None = None  # when the report names our delivery (VERP token, Message-ID)
    message_id: str | None = None  # the original message's Message-ID when the report has it
    occurred_at: datetime | None = None  # UTC (naive is taken as UTC)
    raw_ref: str | None = None  # where the raw report is (e.g. IMAP folder+UID): evidence


class OutcomeStatus(StrEnum):
    RECORDED = "recorded"  # stored and matched to a reader; the policy was applied
    DUPLICATE = "duplicate"  # stored before: nothing changed
    UNKNOWN_RECIPIENT = "unknown_recipient"  # stored, but nobody of ours has the address
    IGNORED = "ignored"  # not stored: no event id or no recipient to act on


@dataclass(frozen=True)
class ReportOutcome:
    status: OutcomeStatus
    report_id: int | None = None
    reader_id: int | None = None
    delivery_id: int | None = None
    edition_id: int | None = None
    suppression: Suppression | None = None  # the suppression this report made, if any
    unsubscribed: bool = False  # a complaint that unsubscribed the reader
    paused_edition: bool = False  # the report made its edition pause
    note: str = ""

    @property
    def changed(self) -> bool:
        return self.suppression is not None or self.unsubscribed or self.paused_edition

    def describe(self) -> str:
        parts = [self.status.value]
        if self.suppression is not None:
            parts.append(f"suppressed ({self.suppression.value})")
        if self.unsubscribed:
            parts.append("unsubscribed")
        if self.paused_edition:
            parts.append(f"edition {self.edition_id} paused")
        if self.note:
            parts.append(self.note)
        return ", ".join(parts)


def _clip(text: str | None, size: int) -> str | None:
    if text is None:
        return None
    return " ".join(text.split())[:size] or None


def _aware(when: datetime | None) -> datetime | None:
    if when is None:
        return None
    return when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)


_OUR_MESSAGE_ID = re.compile(r"<?e\.([0-9]{1,18})\.r\.([0-9]{1,18})\.[0-9a-f]{16}@[^<>\s]+>?")


def delivery_for_message_id(session: Session, message_id: str) -> Delivery | None:
    """Our delivery an edition Message-ID names (`editions.personalize`: e.<edition>.r.
    <reader>.<mac>@domain), checked against its MAC, or None."""
    found = _OUR_MESSAGE_ID.fullmatch(message_id.strip())
    if found is None:
        return None
    edition_id, reader_id = int(found.group(1)), int(found.group(2))
    cfg = current_app.config
    expected = MessageIds(cfg["SECRET_KEY"], cfg["MAIL_FROM"], "e", edition_id, "r").make(reader_id)
    given = message_id.strip()
    if not given.startswith("<"):
        given = f"<{given}>"
    if not hmac.compare_digest(expected.encode(), given.encode()):
        return None
    return session.scalar(
        select(Delivery).where(Delivery.edition_id == edition_id, Delivery.reader_id == reader_id)
    )


def _resolve(session: Session, report: BounceReport) -> tuple[Reader | None, Delivery | None]:
    delivery = None
    if report.delivery_id is not None:
        delivery = session.get(Delivery, report.delivery_id)
    if delivery is None and report.message_id:
        delivery = delivery_for_message_id(session, report.message_id)
    if delivery is not None:
        return delivery.reader, delivery
    key = report.recipient.strip().lower()
    if not key:
        return None, None
    return session.scalar(select(Reader).where(Reader.email_key == key)), None


_TABLE = table_of(ReceivedReport)


def _store(session: Session, values: dict[str, object]) -> int | None:
    """Insert the report; its id, or None when (source, event_id) was stored before."""
    statement = (
        upsert(_TABLE, session)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["source", "event_id"])
        .returning(_TABLE.c.id)
    )
    return session.execute(statement).scalar()


def record_report(
    session: Session, report: BounceReport, *, now: datetime | None = None
) -> ReportOutcome:
    """Store `report` once and apply the policy to its reader and edition. On SQLite,
    call it before the transaction reads anything, or after it has written."""
    now = now or utcnow()
    if report.source not in SOURCES:
        raise ValueError(f"unknown report source {report.source!r}")
    event_id = _clip(report.event_id, 255)
    recipient = _clip(report.recipient, 254) or ""
    if event_id is None or (not recipient and report.delivery_id is None and not report.message_id):
        return ReportOutcome(OutcomeStatus.IGNORED, note="no event id or recipient")
    # The insert comes first: it settles duplicates in one statement, and on SQLite a
    # transaction that writes first holds the write lock (one that read first could not
    # take it once another writer committed).
    report_id = _store(
        session,
        {
            "source": report.source,
            "event_id": event_id,
            "kind": report.kind.value,
            "recipient": recipient,
            "recipient_domain": recipient.rpartition("@")[2].lower()[:254],
            "diagnostic": _clip(report.diagnostic, 1000) or "",
            "message_id": _clip(report.message_id, 255),
            "raw_ref": _clip(report.raw_ref, 500),
            "suppressed": False,
            "occurred_at": _aware(report.occurred_at),
            "received_at": now,
        },
    )
    if report_id is None:
        return ReportOutcome(OutcomeStatus.DUPLICATE)
    row = session.get(ReceivedReport, report_id)
    assert row is not None  # inserted just now, in this transaction
    reader, delivery = _resolve(session, report)
    edition_id = delivery.edition_id if delivery is not None else None
    row.reader_id = reader.id if reader is not None else None
    row.delivery_id = delivery.id if delivery is not None else None
    row.edition_id = edition_id
    if reader is not None and not recipient:
        row.recipient = reader.email
        row.recipient_domain = reader.email_key.rpartition("@")[2]
    session.flush()
    if reader is None:
        log.info("%s report %s: no reader has %r", report.source, event_id, recipient)
        return ReportOutcome(OutcomeStatus.UNKNOWN_RECIPIENT, report_id=report_id)
    policy = Policy.from_config(current_app.config)
    action = apply_to_reader(session, reader, row, policy, now)
    paused = (
        edition_id is not None
        and report.kind != ReportKind.SOFT_BOUNCE
        and protect_edition(session, edition_id, policy, now)
    )
    if report.kind == ReportKind.COMPLAINT:
        metrics.COMPLAINTS.labels(report.source).inc()
    else:
        metrics.BOUNCES.labels(report.source, report.kind.value).inc()
    return ReportOutcome(
        OutcomeStatus.RECORDED,
        report_id=report_id,
        reader_id=reader.id,
        delivery_id=delivery.id if delivery is not None else None,
        edition_id=edition_id,
        suppression=action.suppression,
        unsubscribed=action.unsubscribed,
        paused_edition=paused,
    )


def claim_token(session: Session, source: str, token: str, now: datetime) -> bool:
    """Record a signed request's one-time token; False when it was seen before (a
    replay). Tokens older than `TOKEN_RETENTION` are forgotten on the way: by then their
    timestamp is far outside any tolerance."""
    table = table_of(WebhookToken)
    stored = session.execute(
        upsert(table, session)
        .values(source=source, token=token, received_at=now)
        .on_conflict_do_nothing(index_elements=["source", "token"])
        .returning(table.c.token)
    ).scalar()
    if stored is not None and secrets.randbelow(100) == 0:
        session.execute(delete(table).where(table.c.received_at < now - TOKEN_RETENTION))
    return stored is not None
