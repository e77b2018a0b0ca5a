"""Bounce and complaint rates: per edition (what the automatic pause watches, computed as
each report arrives) and per receiving domain over a period (the staff page)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import current_app
from sqlalchemy import ColumnElement, case, distinct, func, literal, select
from sqlalchemy.orm import QueryableAttribute, Session

from newsletter.deliverability.models import ReceivedReport, ReportKind
from newsletter.deliverability.policy import EditionCounts, Policy, pause_reason
from newsletter.delivery.models import Delivery
from newsletter.editions.models import Edition, EditionStatus
from newsletter.readers.models import Reader
from newsletter.readers.suppression import email_reader

log = logging.getLogger(__name__)

# The receiving domains staff watch by name (the mailbox providers with published
# bulk-sender rules); every other domain is "others".
DOMAIN_GROUPS: dict[str, tuple[str, ...]] = {
    "gmail.com": ("gmail.com", "googlemail.com"),
    "yahoo.com": ("yahoo.com", "ymail.com", "rocketmail.com", "aol.com"),
    "outlook.com": ("outlook.com", "hotmail.com", "live.com", "msn.com"),
}
OTHERS = "others"


def domain_group(domain: str) -> str:
    domain = domain.lower()
    for group, members in DOMAIN_GROUPS.items():
        if domain in members:
            return group
    return OTHERS


def _group_sql(domain: ColumnElement[str] | QueryableAttribute[str]) -> ColumnElement[str]:
    return case(
        *((domain.in_(members), literal(group)) for group, members in DOMAIN_GROUPS.items()),
        else_=literal(OTHERS),
    )


def _kind_count(kind: ReportKind) -> ColumnElement[int]:
    return func.count(distinct(case((ReceivedReport.kind == kind, ReceivedReport.reader_id))))


def edition_counts(session: Session, edition_ids: list[int]) -> dict[int, EditionCounts]:
    """Each edition's messages handed to a mail server and its reports (distinct readers
    per kind), in two queries."""
    handed = dict(
        session.execute(
            select(Delivery.edition_id, func.count())
            .where(Delivery.edition_id.in_(edition_ids), Delivery.attempts > 0)
            .group_by(Delivery.edition_id)
        ).all()
    )
    reports = {
        row[0]: row[1:]
        for row in session.execute(
            select(
                ReceivedReport.edition_id,
                _kind_count(ReportKind.HARD_BOUNCE),
                _kind_count(ReportKind.SOFT_BOUNCE),
                _kind_count(ReportKind.COMPLAINT),
            )
            .where(ReceivedReport.edition_id.in_(edition_ids))
            .group_by(ReceivedReport.edition_id)
        )
    }
    return {i: EditionCounts(handed.get(i, 0), *reports.get(i, (0, 0, 0))) for i in edition_ids}


def protect_edition(session: Session, edition_id: int, policy: Policy, now: datetime) -> bool:
    """Pause the edition when its rates break the policy's limits, and email staff. True
    when this call paused it. An edition pauses by itself once: after staff resume it,
    it carries on."""
    edition = session.get(Edition, edition_id)
    if (
        edition is None
        or edition.status != EditionStatus.SENDING
        or edition.paused
        or edition.auto_paused_reason is not None
    ):
        return False
    counts = edition_counts(session, [edition_id])[edition_id]
    reason = pause_reason(counts, policy)
    if reason is None:
        return False
    edition.paused = True
    edition.auto_paused_reason = reason
    edition.auto_paused_at = now
    session.flush()
    log.warning("edition %s paused by itself: %s", edition.date, reason)
    base = current_app.config["BASE_URL"]
    for staff in session.scalars(select(Reader).where(Reader.is_staff)):
        email_reader(
            session,
            staff,
            "edition_paused",
            {
                "edition_date": edition.date.isoformat(),
                "reason": reason,
                "edition_url": f"{base}/admin/editions/{edition.id}",
                "deliverability_url": f"{base}/admin/deliverability",
            },
        )
    return True


@dataclass(frozen=True)
class Rates:
    """Reports against deliveries for one row of the staff page."""

    label: str
    deliveries: int
    hard_bounces: int
    soft_bounces: int
    complaints: int

    def _rate(self, count: int) -> float:
        return count / self.deliveries if self.deliveries else 0.0

    @property
    def hard_bounce_rate(self) -> float:
        return self._rate(self.hard_bounces)

    @property
    def complaint_rate(self) -> float:
        return self._rate(self.complaints)


def edition_rates(session: Session, now: datetime, days: int = 30) -> list[Rates]:
    """Every edition of the last `days` days, newest first."""
    since = (now - timedelta(days=days)).date()
    editions = list(
        session.execute(
            select(Edition.id, Edition.date)
            .where(Edition.date >= since)
            .order_by(Edition.date.desc())
        )
    )
    counts = edition_counts(session, [i for i, _ in editions])
    return [
        Rates(
            day.isoformat(),
            counts[i].deliveries,
            counts[i].hard_bounces,
            counts[i].soft_bounces,
            counts[i].complaints,
        )
        for i, day in editions
    ]


def _domain_of(session: Session, address: QueryableAttribute[str]) -> ColumnElement[str]:
    if session.get_bind().dialect.name == "postgresql":
        return func.split_part(address, "@", 2)
    return func.substr(address, func.instr(address, "@") + 1)


def domain_rates(session: Session, now: datetime, days: int = 30) -> list[Rates]:
    """Per receiving-domain group, over the deliveries sent in the last `days` days and
    the reports received in them."""
    since = now - timedelta(days=days)
    group = _group_sql(_domain_of(session, Reader.email_key)).label("grp")
    handed = dict(
        session.execute(
            select(group, func.count())
            .select_from(Delivery)
            .join(Reader, Reader.id == Delivery.reader_id)
            .where(Delivery.attempts > 0, Delivery.queued_at >= since)
            .group_by(group)
        ).all()
    )
    report_group = _group_sql(ReceivedReport.recipient_domain).label("grp")
    counted = {
        row[0]: row[1:]
        for row in session.execute(
            select(
                report_group,
                _kind_count(ReportKind.HARD_BOUNCE),
                _kind_count(ReportKind.SOFT_BOUNCE),
                _kind_count(ReportKind.COMPLAINT),
            )
            .where(ReceivedReport.received_at >= since)
            .group_by(report_group)
        )
    }
    return [
        Rates(g, handed.get(g, 0), *counted.get(g, (0, 0, 0))) for g in (*DOMAIN_GROUPS, OTHERS)
    ]
