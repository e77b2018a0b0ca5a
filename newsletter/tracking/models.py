from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from newsletter.db import Base, str_enum, utcnow


class Click(Base):
    """One request to a tracked link, human or not. Never charges the meter."""

    __tablename__ = "clicks"
    __table_args__ = (Index("ix_clicks_story_id_at", "story_id", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"), index=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"))
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    seconds_since_delivery: Mapped[int | None]
    method: Mapped[str] = mapped_column(String(10))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    # Truncated (/24 for IPv4, /48 for IPv6): enough to spot a scanner farm, not a person.
    ip_prefix: Mapped[str | None] = mapped_column(String(64))
    bot: Mapped[bool] = mapped_column(default=False)
    bot_reason: Mapped[str | None] = mapped_column(String(200))


class Read(Base):
    """A story the reader really read (the page was shown in a browser), charged to the
    meter once per story per calendar month in the reader's time zone.

    A metered read takes the next `slot` of its reader's month (1, 2, 3, ...): the
    unique (reader, month, slot) is what keeps simultaneous charges from exceeding the
    limit without any lock (`meter.charge_read`). A read stays counted when its story is
    deleted later (story_id becomes NULL), so the slots of a month never have gaps.
    """

    __tablename__ = "reads"
    __table_args__ = (
        UniqueConstraint("reader_id", "story_id", "month"),
        UniqueConstraint("reader_id", "month", "slot"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"))
    story_id: Mapped[int | None] = mapped_column(ForeignKey("stories.id", ondelete="SET NULL"))
    month: Mapped[str] = mapped_column(String(7))  # "2026-11", in the reader's time zone
    # Whether this read used up one of the free stories (trial and paid reads do not).
    metered: Mapped[bool] = mapped_column(default=True)
    slot: Mapped[int | None]  # metered reads: 1..FREE_STORIES_PER_MONTH; else NULL
    edition_id: Mapped[int | None] = mapped_column(ForeignKey("editions.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(default=utcnow)


class EventKind(StrEnum):
    PAYWALL_IMPRESSION = "paywall_impression"
    TRIAL_STARTED = "trial_started"
    PAID = "paid"


class Event(Base):
    """What staff read as a funnel: paywall seen → trial started → paid, and from which
    story and edition each step came."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_kind_at", "kind", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[EventKind] = mapped_column(str_enum(EventKind, length=30))
    reader_id: Mapped[int | None] = mapped_column(
        ForeignKey("readers.id", ondelete="SET NULL"), index=True
    )
    story_id: Mapped[int | None] = mapped_column(ForeignKey("stories.id", ondelete="SET NULL"))
    edition_id: Mapped[int | None] = mapped_column(ForeignKey("editions.id", ondelete="SET NULL"))
    at: Mapped[datetime] = mapped_column(default=utcnow)
