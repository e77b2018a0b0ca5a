"""What the dashboard counts, straight from the rows: readers, deliveries, clicks, events.

Every figure is a count over rows the app already keeps, so a test can make the rows and
check the figure. Readers by plan over time is rebuilt from those rows for each day:
subscribed = confirmed by the end of the day and not unsubscribed or suppressed by then;
of those, paid = a `paid` event by then; trial = a `trial_started` event within the
`TRIAL_DAYS` before the end of the day and not paid; free = the rest.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from flask import current_app
from sqlalchemy import and_, case, exists, func, not_, or_, select
from sqlalchemy.orm import Session

from newsletter.db import utcnow
from newsletter.delivery.models import Delivery, DeliveryState
from newsletter.editions.models import Edition
from newsletter.readers.models import Reader
from newsletter.stories.models import Story
from newsletter.tracking.models import Click, Event, EventKind

# The send loop records a reader who left before their turn as "<status> before sending";
# every other suppressed delivery is a permanent refusal by the receiving server: a bounce.
LEFT_BEFORE_SENDING = "% before sending"


@dataclass(frozen=True)
class PlanDay:
    day: date
    free: int
    trial: int
    paid: int

    @property
    def total(self) -> int:
        return self.free + self.trial + self.paid


def end_of(day: date) -> datetime:
    return datetime.combine(day + timedelta(days=1), time(0), UTC)


def readers_by_plan(session: Session, days: int = 30, now: datetime | None = None) -> list[PlanDay]:
    now = now or utcnow()
    trial_days = int(current_app.config.get("TRIAL_DAYS", 7))
    out = []
    for offset in range(days - 1, -1, -1):
        day = now.date() - timedelta(days=offset)
        end = min(end_of(day), now)
        subscribed = and_(
            Reader.confirmed_at.is_not(None),
            Reader.confirmed_at < end,
            or_(Reader.unsubscribed_at.is_(None), Reader.unsubscribed_at >= end),
            or_(Reader.suppressed_at.is_(None), Reader.suppressed_at >= end),
        )
        paid = exists().where(
            Event.reader_id == Reader.id, Event.kind == EventKind.PAID, Event.at < end
        )
        trial = exists().where(
            Event.reader_id == Reader.id,
            Event.kind == EventKind.TRIAL_STARTED,
            Event.at < end,
            Event.at >= end - timedelta(days=trial_days),
        )
        total, n_paid, n_trial = session.execute(
            select(
                func.count(),
                func.sum(case((paid, 1), else_=0)),
                func.sum(case((and_(trial, not_(paid)), 1), else_=0)),
            ).where(subscribed)
        ).one()
        total, n_paid, n_trial = total or 0, n_paid or 0, n_trial or 0
        out.append(PlanDay(day, total - n_paid - n_trial, n_trial, n_paid))
    return out


@dataclass(frozen=True)
class EditionDelivery:
    edition_id: int
    day: date
    status: str
    sent: int
    failed: int
    bounced: int
    left: int  # suppressed with nothing sent: unsubscribed or bounced before their turn
    pending: int  # queued or sending


def editions_sent(session: Session, limit: int = 14) -> list[EditionDelivery]:
    """The latest editions that have deliveries, oldest first."""
    editions = list(
        session.execute(
            select(Edition.id, Edition.date, Edition.status)
            .where(exists().where(Delivery.edition_id == Edition.id))
            .order_by(Edition.date.desc())
            .limit(limit)
        )
    )
    if not editions:
        return []
    left_row = and_(
        Delivery.state == DeliveryState.SUPPRESSED,
        Delivery.last_reply.like(LEFT_BEFORE_SENDING),
    )
    bounced_row = and_(Delivery.state == DeliveryState.SUPPRESSED, not_(left_row))
    pending = Delivery.state.in_([DeliveryState.QUEUED, DeliveryState.SENDING])
    rows = {
        r.edition_id: r
        for r in session.execute(
            select(
                Delivery.edition_id,
                func.sum(case((Delivery.state == DeliveryState.SENT, 1), else_=0)).label("sent"),
                func.sum(case((Delivery.state == DeliveryState.FAILED, 1), else_=0)).label(
                    "failed"
                ),
                func.sum(case((bounced_row, 1), else_=0)).label("bounced"),
                func.sum(case((left_row, 1), else_=0)).label("left"),
                func.sum(case((pending, 1), else_=0)).label("pending"),
            )
            .where(Delivery.edition_id.in_([e.id for e in editions]))
            .group_by(Delivery.edition_id)
        )
    }
    out = []
    for edition_id, day, status in reversed(editions):
        r = rows[edition_id]
        out.append(
            EditionDelivery(
                edition_id,
                day,
                status.value if hasattr(status, "value") else str(status),
                r.sent or 0,
                r.failed or 0,
                r.bounced or 0,
                r.left or 0,
                r.pending or 0,
            )
        )
    return out


@dataclass(frozen=True)
class StoryClicks:
    story_id: int
    title: str
    human: int
    bot: int


def clicks_per_story(
    session: Session, days: int = 30, limit: int = 10, now: datetime | None = None
) -> list[StoryClicks]:
    since = (now or utcnow()) - timedelta(days=days)
    human = func.sum(case((Click.bot.is_(False), 1), else_=0))
    bot = func.sum(case((Click.bot.is_(True), 1), else_=0))
    rows = session.execute(
        select(Story.id, Story.title, human.label("human"), bot.label("bot"))
        .join(Click, Click.story_id == Story.id)
        .where(Click.at >= since)
        .group_by(Story.id, Story.title)
        .order_by(func.count().desc(), Story.id)
        .limit(limit)
    )
    return [StoryClicks(r.id, r.title, r.human or 0, r.bot or 0) for r in rows]


@dataclass(frozen=True)
class Funnel:
    paywall_impressions: int
    paywall_readers: int
    trials: int
    paid: int

    def rate(self, a: int, b: int) -> str:
        return f"{100 * b / a:.1f}%" if a else "–"


def funnel(session: Session, days: int = 30, now: datetime | None = None) -> Funnel:
    since = (now or utcnow()) - timedelta(days=days)

    def count(kind: EventKind, distinct: bool = False) -> int:
        what = func.count(func.distinct(Event.reader_id)) if distinct else func.count()
        return (
            session.scalar(
                select(what).select_from(Event).where(Event.kind == kind, Event.at >= since)
            )
            or 0
        )

    return Funnel(
        count(EventKind.PAYWALL_IMPRESSION),
        count(EventKind.PAYWALL_IMPRESSION, distinct=True),
        count(EventKind.TRIAL_STARTED),
        count(EventKind.PAID),
    )


@dataclass(frozen=True)
class Totals:
    readers: int
    confirmed: int
    bounced: int
    editions_sent: int


def totals(session: Session) -> Totals:
    from newsletter.editions.models import EditionStatus
    from newsletter.readers.models import ReaderStatus

    by_status = dict(
        session.execute(select(Reader.status, func.count()).group_by(Reader.status)).all()
    )

    def n(status: ReaderStatus) -> int:
        return by_status.get(status, 0) or by_status.get(status.value, 0)  # type: ignore[call-overload]

    sent = session.scalar(
        select(func.count()).select_from(Edition).where(Edition.status == EditionStatus.SENT)
    )
    return Totals(
        sum(by_status.values()),
        n(ReaderStatus.CONFIRMED),
        n(ReaderStatus.BOUNCED),
        sent or 0,
    )
