from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from newsletter.db import Base, str_enum, utcnow

DEFAULT_DELIVERY_HOUR = 6


class ReaderStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"


class Suppression(StrEnum):
    """Why no email at all may go to a reader (`newsletter.readers.suppression`)."""

    BOUNCED = "bounced"  # the mail server refused the address permanently
    COMPLAINED = "complained"  # the reader marked our email as spam
    STAFF = "staff"  # a staff member stopped it (e.g. the reader asked by phone)


class Reader(Base):
    __tablename__ = "readers"
    # The worker's every-minute question (which zones have confirmed readers, and who is
    # due there) answered from the index alone, whatever the list size.
    __table_args__ = (
        Index("ix_readers_status_timezone_hour", "status", "timezone", "delivery_hour"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # As the reader typed it, with the domain lower-cased (the local part may be
    # case-sensitive on some servers, so it is kept as given).
    email: Mapped[str] = mapped_column(String(254))
    # The whole address lower-cased: what uniqueness and look-ups use.
    email_key: Mapped[str] = mapped_column(String(254), unique=True)
    status: Mapped[ReaderStatus] = mapped_column(
        str_enum(ReaderStatus), default=ReaderStatus.PENDING
    )
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    delivery_hour: Mapped[int] = mapped_column(default=DEFAULT_DELIVERY_HOUR)
    is_staff: Mapped[bool] = mapped_column(default=False)
    # Bumped on every sign-in, so a sign-in link works once and only the newest one works.
    signin_nonce: Mapped[int] = mapped_column(default=0)
    # Copied into the session cookie at sign-in and checked on every request; sign-out
    # bumps it, which ends every session of the reader at once (`newsletter.auth.session`).
    session_version: Mapped[int] = mapped_column(default=0, server_default="0")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    confirmed_at: Mapped[datetime | None]
    unsubscribed_at: Mapped[datetime | None]
    confirmation_sent_at: Mapped[datetime | None]
    signin_sent_at: Mapped[datetime | None]
    # Set when no email may go to the address at all, with why and the detail (the
    # server's reply, the complaint, the staff member's note). A permanent refusal also
    # makes the status bounced; a complaint makes it unsubscribed.
    suppression: Mapped[Suppression | None] = mapped_column(str_enum(Suppression))
    suppressed_at: Mapped[datetime | None]
    suppressed_reason: Mapped[str | None] = mapped_column(String(1000))
    # Where the consent to list mail came from and when it was given: "signup" (double
    # opt-in here) or the platform and file an import took it from.
    consent_source: Mapped[str | None] = mapped_column(String(300))
    consent_at: Mapped[datetime | None]
    # Imported without documented consent: waiting for its opt-in email, which a job
    # sends at a steady rate (`newsletter.readers.importing.send_queued_invites`).
    invite_queued_at: Mapped[datetime | None] = mapped_column(index=True)
    # Set when the reader's personal data was erased at their request; the row stays
    # (anonymised) so the counts built on it stay right.
    erased_at: Mapped[datetime | None]

    consents: Mapped[list[Consent]] = relationship(
        back_populates="reader", order_by="Consent.id", cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<Reader {self.id} {self.email} {self.status}>"


class ConsentKind(StrEnum):
    SIGNUP = "signup"
    CONFIRM = "confirm"
    RESUBSCRIBE = "resubscribe"
    UNSUBSCRIBE = "unsubscribe"
    IMPORT = "import"  # consent documented by another platform's export


class Consent(Base):
    """Evidence of consent (and its withdrawal): when, from where, and the words shown."""

    __tablename__ = "consents"

    id: Mapped[int] = mapped_column(primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"), index=True)
    kind: Mapped[ConsentKind] = mapped_column(str_enum(ConsentKind))
    wording: Mapped[str] = mapped_column(Text, default="")
    ip: Mapped[str | None] = mapped_column(String(45))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    reader: Mapped[Reader] = relationship(back_populates="consents")


class ErasedAddress(Base):
    """An address erased at its owner's request, kept only as a keyed hash
    (`newsletter.readers.erasure.address_hash`) so an import cannot bring it back."""

    __tablename__ = "erased_addresses"

    address_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(default=utcnow)
