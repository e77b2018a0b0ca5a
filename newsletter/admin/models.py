"""Staff-area rows: the audit log."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from newsletter.db import Base, utcnow


class AuditEntry(Base):
    """Who did what, when, in the staff area. The email is kept as text so the entry
    still says who it was after the reader row is gone."""

    __tablename__ = "audit_log"
    __table_args__ = (Index("ix_audit_log_at", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    staff_id: Mapped[int | None] = mapped_column(ForeignKey("readers.id", ondelete="SET NULL"))
    staff_email: Mapped[str] = mapped_column(String(254))
    action: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(200), default="")
    detail: Mapped[str] = mapped_column(Text, default="")
