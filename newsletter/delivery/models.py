from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from newsletter.billing.entitlement import Plan
from newsletter.db import Base, str_enum, utcnow
from newsletter.editions.models import Edition
from newsletter.readers.models import Reader


class DeliveryState(StrEnum):
    QUEUED = "queued"  # waiting (or waiting to retry after a temporary refusal)
    SENDING = "sending"  # handed to the SMTP server; the outcome is not recorded yet
    SENT = "sent"
    FAILED = "failed"  # temporary refusals until the attempts ran out
    SUPPRESSED = "suppressed"  # permanently refused, or the reader left before their turn


FINAL_STATES = (DeliveryState.SENT, DeliveryState.FAILED, DeliveryState.SUPPRESSED)

# Rows still to do, written out literally (not as bound parameters) so that SQLite and
# PostgreSQL both match it to the partial index below.
PENDING_SQL = "state IN ('queued', 'sending')"


class Delivery(Base):
    """The ledger: one row per edition and reader, made when the reader's turn comes."""

    __tablename__ = "deliveries"
    __table_args__ = (
        UniqueConstraint("edition_id", "reader_id"),
        Index("ix_deliveries_edition_id_state", "edition_id", "state"),
        # What senders claim from, in id order: only the rows still to do, so a claim
        # never wades through the rows already sent.
        Index(
            "ix_deliveries_pending",
            "edition_id",
            "id",
            postgresql_where=text(PENDING_SQL),
            sqlite_where=text(PENDING_SQL),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"))
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"), index=True)
    # Which variant the reader gets, fixed when the row is made.
    plan: Mapped[Plan] = mapped_column(str_enum(Plan))
    state: Mapped[DeliveryState] = mapped_column(
        str_enum(DeliveryState), default=DeliveryState.QUEUED
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Which sender holds the row, and until when; an expired lease may be taken over.
    claimed_by: Mapped[str | None] = mapped_column(String(100))
    lease_until: Mapped[datetime | None]
    last_reply: Mapped[str | None] = mapped_column(String(1000))
    message_id: Mapped[str | None] = mapped_column(String(255))
    # Set when the row was found SENDING after a crash and sent again (same Message-ID).
    resent_after_crash: Mapped[bool] = mapped_column(default=False)
    queued_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None]

    edition: Mapped[Edition] = relationship()
    reader: Mapped[Reader] = relationship()
