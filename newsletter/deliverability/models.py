"""What the app keeps of bounce and complaint reports: one row per report ever accepted.

The unique (source, event_id) pair is what makes a redelivered webhook, a re-read mailbox
message or two deliveries of the same event at once a no-op (`reports.record_report`).
The row is also the evidence behind a suppression and the input of the rates staff see.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from newsletter.db import Base, str_enum, utcnow


class ReportKind(StrEnum):
    HARD_BOUNCE = "hard_bounce"
    SOFT_BOUNCE = "soft_bounce"
    COMPLAINT = "complaint"


class ReceivedReport(Base):
    __tablename__ = "received_reports"
    __table_args__ = (
        UniqueConstraint("source", "event_id"),
        Index("ix_received_reports_edition_id_kind", "edition_id", "kind"),
        Index("ix_received_reports_reader_id_kind", "reader_id", "kind"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    source: Mapped[str] = mapped_column(String(20))
    event_id: Mapped[str] = mapped_column(String(255))
    kind: Mapped[ReportKind] = mapped_column(str_enum(ReportKind))
    recipient: Mapped[str] = mapped_column(String(254))
    # The receiving domain, lower-cased: what the per-domain rates group by.
    recipient_domain: Mapped[str] = mapped_column(String(254), default="")
    diagnostic: Mapped[str] = mapped_column(String(1000), default="")
    message_id: Mapped[str | None] = mapped_column(String(255))
    raw_ref: Mapped[str | None] = mapped_column(String(500))
    # What the report was matched to (None: nobody of ours, or no longer there).
    reader_id: Mapped[int | None] = mapped_column(
        ForeignKey("readers.id", ondelete="SET NULL"), index=True
    )
    delivery_id: Mapped[int | None] = mapped_column(
        ForeignKey("deliveries.id", ondelete="SET NULL")
    )
    edition_id: Mapped[int | None] = mapped_column(ForeignKey("editions.id", ondelete="SET NULL"))
    # True on the report that suppressed its reader: the evidence staff see.
    suppressed: Mapped[bool] = mapped_column(default=False)
    occurred_at: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)


class WebhookToken(Base):
    """A signed webhook's one-time token (Mailgun's), kept while its timestamp could still
    pass the tolerance: the primary key is what refuses a replayed request."""

    __tablename__ = "webhook_tokens"

    source: Mapped[str] = mapped_column(String(20), primary_key=True)
    token: Mapped[str] = mapped_column(String(200), primary_key=True)
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
