"""The bounce and complaint policy, in one place.

- A hard bounce suppresses the address at once.
- Soft bounces suppress it once `SOFT_BOUNCE_LIMIT` of them (3) came on as many different
  editions within `SOFT_BOUNCE_WINDOW_DAYS` (15): one full mailbox is no reason to stop,
  a mailbox that stays full for three editions is. A soft bounce that names no edition
  counts for the UTC day it happened on (one edition a day).
- A complaint unsubscribes and suppresses at once. A suppressed reader cannot confirm or
  resubscribe (`newsletter.readers.services`), so a later signup changes nothing; only
  staff lifting it lets the reader opt in again, with a new confirmation.
- An edition being sent pauses by itself once, after `PAUSE_MIN_DELIVERIES` handed to the
  mail server, its complaint rate reaches `PAUSE_COMPLAINT_RATE` (0.3%) or its hard-bounce
  rate `PAUSE_HARD_BOUNCE_RATE` (5%). Staff are emailed and resume by hand.

Every suppression goes through `newsletter.readers.suppression` with its evidence: the
kind, the source, the report's id and the diagnostic.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.deliverability.models import ReceivedReport, ReportKind
from newsletter.readers.models import Reader, Suppression
from newsletter.readers.suppression import record_bounce, record_complaint


@dataclass(frozen=True)
class Policy:
    soft_bounce_limit: int = 3
    soft_bounce_window: timedelta = timedelta(days=15)
    pause_min_deliveries: int = 1000
    pause_complaint_rate: float = 0.003
    pause_hard_bounce_rate: float = 0.05

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Policy:
        return cls(
            soft_bounce_limit=int(config.get("SOFT_BOUNCE_LIMIT", 3)),
            soft_bounce_window=timedelta(days=int(config.get("SOFT_BOUNCE_WINDOW_DAYS", 15))),
            pause_min_deliveries=int(config.get("PAUSE_MIN_DELIVERIES", 1000)),
            pause_complaint_rate=float(config.get("PAUSE_COMPLAINT_RATE", 0.003)),
            pause_hard_bounce_rate=float(config.get("PAUSE_HARD_BOUNCE_RATE", 0.05)),
        )


def evidence(report: ReceivedReport) -> str:
    """The suppression's recorded reason: what happened, where it was reported, the
    report's id and what the server said."""
    what = report.kind.value.replace("_", " ")
    said = f": {report.diagnostic}" if report.diagnostic else ""
    return f"{what} via {report.source} (report {report.event_id}){said}"


def _soft_bounce_editions(session: Session, reader_id: int, since: datetime, now: datetime) -> int:
    """How many different editions (or days, for reports naming none) the reader's soft
    bounces since `since` came on."""
    rows = session.execute(
        select(ReceivedReport.edition_id, ReceivedReport.occurred_at, ReceivedReport.received_at)
        .where(
            ReceivedReport.reader_id == reader_id,
            ReceivedReport.kind == ReportKind.SOFT_BOUNCE,
            func.coalesce(ReceivedReport.occurred_at, ReceivedReport.received_at) >= since,
        )
        .limit(1000)
    )
    seen: set[str] = set()
    for edition_id, occurred_at, received_at in rows:
        when = occurred_at or received_at or now
        seen.add(f"e{edition_id}" if edition_id is not None else f"d{when.date()}")
    return len(seen)


@dataclass(frozen=True)
class ReaderAction:
    """What a report did to its reader."""

    suppression: Suppression | None = None  # the suppression this report made
    unsubscribed: bool = False


def apply_to_reader(
    session: Session, reader: Reader, report: ReceivedReport, policy: Policy, now: datetime
) -> ReaderAction:
    """Suppress (and for a complaint unsubscribe) `reader` when the policy says so. The
    report row is already flushed; it is marked as the suppression's evidence."""
    was_unsubscribed = reader.unsubscribed_at is not None
    if report.kind == ReportKind.COMPLAINT:
        made = record_complaint(session, reader, evidence(report), now=now)
        kind = Suppression.COMPLAINED
    elif report.kind == ReportKind.HARD_BOUNCE:
        made = record_bounce(session, reader, evidence(report), now=now)
        kind = Suppression.BOUNCED
    else:
        editions = _soft_bounce_editions(session, reader.id, now - policy.soft_bounce_window, now)
        if editions < policy.soft_bounce_limit:
            return ReaderAction()
        detail = (
            f"{evidence(report)} ({editions} soft bounces on different editions within "
            f"{policy.soft_bounce_window.days} days)"
        )
        made = record_bounce(session, reader, detail, now=now)
        kind = Suppression.BOUNCED
    if not made or reader.suppression != kind:
        return ReaderAction()
    report.suppressed = True
    session.flush()
    return ReaderAction(
        kind, unsubscribed=not was_unsubscribed and reader.unsubscribed_at is not None
    )


@dataclass(frozen=True)
class EditionCounts:
    """An edition's reports against the messages handed to mail servers."""

    deliveries: int
    hard_bounces: int
    soft_bounces: int
    complaints: int

    def rate(self, count: int) -> float:
        return count / self.deliveries if self.deliveries else 0.0

    @property
    def hard_bounce_rate(self) -> float:
        return self.rate(self.hard_bounces)

    @property
    def complaint_rate(self) -> float:
        return self.rate(self.complaints)


def pause_reason(counts: EditionCounts, policy: Policy) -> str | None:
    """Why the edition must stop sending, in words staff read, or None."""
    if counts.deliveries < policy.pause_min_deliveries:
        return None
    if counts.complaint_rate >= policy.pause_complaint_rate:
        return (
            f"complaint rate {counts.complaint_rate:.2%} ({counts.complaints} of "
            f"{counts.deliveries} delivered) reached the {policy.pause_complaint_rate:.2%} limit"
        )
    if counts.hard_bounce_rate >= policy.pause_hard_bounce_rate:
        return (
            f"hard-bounce rate {counts.hard_bounce_rate:.2%} ({counts.hard_bounces} of "
            f"{counts.deliveries} delivered) reached the {policy.pause_hard_bounce_rate:.2%} limit"
        )
    return None
