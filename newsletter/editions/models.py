from __future__ import annotations

from datetime import date, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Date, ForeignKey, String, Text, UniqueConstraint, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from newsletter.billing.entitlement import Plan
from newsletter.db import Base, str_enum, utcnow
from newsletter.mail.message import Body, body_at
from newsletter.stories.models import Story


class EditionStatus(StrEnum):
    ASSEMBLED = "assembled"  # stories chosen and rendered; may still be re-assembled
    SENDING = "sending"  # frozen: the first delivery was queued
    SENT = "sent"  # every queued delivery reached a final state


class Edition(Base):
    """One day's email. `date` is the readers' local date it is for."""

    __tablename__ = "editions"

    id: Mapped[int] = mapped_column(primary_key=True)
    date: Mapped[date] = mapped_column(Date, unique=True)
    status: Mapped[EditionStatus] = mapped_column(
        str_enum(EditionStatus), default=EditionStatus.ASSEMBLED
    )
    subject: Mapped[str] = mapped_column(String(300))
    preheader: Mapped[str] = mapped_column(String(300))
    word_count: Mapped[int]
    reading_seconds: Mapped[int]
    assembled_at: Mapped[datetime] = mapped_column(default=utcnow)
    send_started_at: Mapped[datetime | None]
    send_finished_at: Mapped[datetime | None]
    # Set by staff to hold a send in progress: senders claim no more of its rows until it
    # is cleared (rows already claimed finish). See `newsletter.delivery.store`.
    paused: Mapped[bool] = mapped_column(default=False, server_default=false())
    # Set when the edition paused by itself (too many complaints or hard bounces; see
    # `newsletter.deliverability.policy`): why and when. Kept after staff resume, so it
    # pauses by itself once only.
    auto_paused_reason: Mapped[str | None] = mapped_column(Text)
    auto_paused_at: Mapped[datetime | None]
    # Why its messages cannot be built (which story, which template), when they cannot;
    # senders skip it and its readers stay queued until a rendering that works clears it.
    # See `newsletter.editions.rendering`.
    compose_error: Mapped[str | None] = mapped_column(Text)
    compose_error_at: Mapped[datetime | None]

    stories: Mapped[list[EditionStory]] = relationship(
        back_populates="edition", order_by="EditionStory.position", cascade="all, delete-orphan"
    )
    variants: Mapped[list[EditionVariant]] = relationship(
        back_populates="edition", cascade="all, delete-orphan"
    )

    @property
    def frozen(self) -> bool:
        return self.status != EditionStatus.ASSEMBLED

    def variant(self, plan: Plan) -> EditionVariant:
        for v in self.variants:
            if v.plan == plan:
                return v
        raise KeyError(plan)

    def __repr__(self) -> str:
        return f"<Edition {self.date} {self.status}>"


class EditionStory(Base):
    __tablename__ = "edition_stories"
    __table_args__ = (UniqueConstraint("edition_id", "position"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"))
    # Unique: a story goes out in one edition only, ever.
    story_id: Mapped[int] = mapped_column(
        ForeignKey("stories.id", ondelete="RESTRICT"), unique=True
    )
    position: Mapped[int]

    edition: Mapped[Edition] = relationship(back_populates="stories")
    story: Mapped[Story] = relationship(lazy="joined")


class EditionVariant(Base):
    """The edition rendered for one plan: MJML compiled and CSS inlined once, with holes
    for what differs per reader. Sending only fills the holes.

    `html` and `text` are the literal text alone; where each hole goes is kept beside it
    as `[[offset, name], ...]` (offsets into the text, ascending), so no text in them can
    ever be taken for a hole."""

    __tablename__ = "edition_variants"
    __table_args__ = (UniqueConstraint("edition_id", "plan"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"))
    plan: Mapped[Plan] = mapped_column(str_enum(Plan))
    subject: Mapped[str] = mapped_column(String(300))
    html: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    html_holes: Mapped[list[list[Any]]] = mapped_column(JSON, default=list, server_default="[]")
    text_holes: Mapped[list[list[Any]]] = mapped_column(JSON, default=list, server_default="[]")

    edition: Mapped[Edition] = relationship(back_populates="variants")

    @property
    def html_body(self) -> Body:
        return body_at(self.html, self.html_holes)

    @property
    def text_body(self) -> Body:
        return body_at(self.text, self.text_holes)
