"""Email template rows: versions, which one is published and last rendered well, and
render failures."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from newsletter.db import Base, utcnow
from newsletter.readers.models import Reader


class TemplateVersion(Base):
    """One saved version of an email (or of the shared layout, name `_layout`).

    Never changed once written: publishing, rolling back and diffs all refer to these.
    Version 1 of each email is its files in `templates/email/` (source `default`).
    """

    __tablename__ = "template_versions"
    __table_args__ = (UniqueConstraint("name", "number"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    number: Mapped[int]
    subject: Mapped[str] = mapped_column(Text, default="")
    mjml: Mapped[str] = mapped_column(Text)
    text: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(String(20), default="staff")  # "default" or "staff"
    note: Mapped[str] = mapped_column(String(300), default="")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("readers.id", ondelete="SET NULL"))

    created_by: Mapped[Reader | None] = relationship()

    def parts(self) -> dict[str, str]:
        return {"subject": self.subject, "mjml": self.mjml, "text": self.text}


class EmailTemplate(Base):
    """Which version of an email is published, and which last rendered well for real.

    No row, or `published_id` NULL: the files are used. `last_good_id` is the version that
    last rendered in a real send (NULL: the files); it is what a failing published version
    falls back to.
    """

    __tablename__ = "email_templates"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    published_id: Mapped[int | None] = mapped_column(
        ForeignKey("template_versions.id", ondelete="SET NULL")
    )
    last_good_id: Mapped[int | None] = mapped_column(
        ForeignKey("template_versions.id", ondelete="SET NULL")
    )
    published_at: Mapped[datetime | None]
    published_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("readers.id", ondelete="SET NULL")
    )

    published: Mapped[TemplateVersion | None] = relationship(foreign_keys=[published_id])
    last_good: Mapped[TemplateVersion | None] = relationship(foreign_keys=[last_good_id])


class TemplateFailure(Base):
    """A published version that failed when something was really sent, and what was sent
    instead: what staff see to learn why an edition did not use their version."""

    __tablename__ = "template_failures"
    __table_args__ = (Index("ix_template_failures_name_at", "name", "at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(64))
    failed_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("template_versions.id", ondelete="SET NULL")
    )
    # What was used instead: a version, or NULL for the files.
    used_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("template_versions.id", ondelete="SET NULL")
    )
    edition_id: Mapped[int | None] = mapped_column(
        ForeignKey("editions.id", ondelete="SET NULL"), index=True
    )
    message: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(default=utcnow)

    failed_version: Mapped[TemplateVersion | None] = relationship(foreign_keys=[failed_version_id])
    used_version: Mapped[TemplateVersion | None] = relationship(foreign_keys=[used_version_id])
