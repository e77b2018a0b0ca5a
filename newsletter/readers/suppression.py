"""Whether a reader may be emailed at all, and the ways an address gets suppressed.

This is the one place that decides. Every transactional email to a reader (confirmation,
sign-in, "already subscribed") goes through `email_reader`, which skips a suppressed
address and logs why; list mail goes only to confirmed readers, and a suppressed reader
is never confirmed (a bounce or staff suppression makes the status bounced, a complaint
makes it unsubscribed, and confirming or resubscribing is refused while suppressed).

The functions that suppress are written for the provider webhooks too (bounce and
complaint notifications): they flush, never commit, and running one twice changes
nothing, so a redelivered notification is harmless. The first reason recorded stays
until staff lift it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from newsletter.db import utcnow
from newsletter.errors import InvalidInput
from newsletter.mail.sending import send_email
from newsletter.readers.models import Consent, ConsentKind, Reader, ReaderStatus, Suppression

log = logging.getLogger(__name__)

MAX_DETAIL_LENGTH = 1000


def suppression_of(reader: Reader) -> Suppression | None:
    """Why no email may go to `reader`, or None when it may. A reader marked bounced
    without a recorded reason (by the send loop's own statement) counts as bounced."""
    if reader.suppression is not None:
        return reader.suppression
    if reader.status == ReaderStatus.BOUNCED:
        return Suppression.BOUNCED
    return None


def may_email(reader: Reader) -> bool:
    return suppression_of(reader) is None


def email_reader(session: Session, reader: Reader, name: str, context: dict[str, Any]) -> bool:
    """Queue the transactional email `name` to `reader` (sent after commit), unless the
    address is suppressed: then nothing is queued, the reason is logged, and False says so."""
    reason = suppression_of(reader)
    if reason is not None:
        log.info("email %r to reader %s not sent: suppressed (%s)", name, reader.id, reason.value)
        return False
    send_email(session, name, reader.email, context)
    return True


def suppression_detail(detail: str) -> str | None:
    """What is kept of a suppression's reason: one line, bounded."""
    return " ".join(detail.split())[:MAX_DETAIL_LENGTH] or None


def _suppress(
    session: Session, reader: Reader, reason: Suppression, detail: str, now: datetime | None
) -> bool:
    if reader.suppression is not None:
        return False
    reader.suppression = reason
    reader.suppressed_at = now or utcnow()
    reader.suppressed_reason = suppression_detail(detail)
    session.flush()
    return True


def record_bounce(
    session: Session, reader: Reader, reply: str, *, now: datetime | None = None
) -> bool:
    """A mail server refused the address permanently (`reply` is what it said). The
    reader gets nothing more, list mail included. True when this changed anything."""
    now = now or utcnow()
    changed = _suppress(session, reader, Suppression.BOUNCED, reply, now)
    if reader.suppression == Suppression.BOUNCED and reader.status != ReaderStatus.BOUNCED:
        reader.status = ReaderStatus.BOUNCED
        changed = True
        session.flush()
    return changed


def record_complaint(
    session: Session, reader: Reader, detail: str, *, now: datetime | None = None
) -> bool:
    """The reader reported our email as spam: they are unsubscribed (recorded as
    consent withdrawn) and get no email at all. True when this changed anything."""
    now = now or utcnow()
    if not _suppress(session, reader, Suppression.COMPLAINED, f"complaint: {detail}", now):
        return False
    if reader.status in (ReaderStatus.CONFIRMED, ReaderStatus.PENDING):
        reader.status = ReaderStatus.UNSUBSCRIBED
        reader.unsubscribed_at = now
        session.add(
            Consent(
                reader=reader,
                kind=ConsentKind.UNSUBSCRIBE,
                wording="complaint (reported as spam)",
                created_at=now,
            )
        )
    session.flush()
    return True


def suppress_by_staff(
    session: Session, reader: Reader, staff_email: str, note: str, *, now: datetime | None = None
) -> None:
    """Staff stop every email to the reader (status bounced, as a hard bounce does)."""
    if suppression_of(reader) is not None:
        raise InvalidInput("This reader is already suppressed.")
    note = " ".join(note.split())[:500] or "no reason given"
    _suppress(session, reader, Suppression.STAFF, f"suppressed by {staff_email}: {note}", now)
    reader.status = ReaderStatus.BOUNCED
    session.flush()


def lift_suppression(session: Session, reader: Reader) -> ReaderStatus:
    """Staff lift a suppression, whatever its reason. A bounced reader goes back to where
    they were before it; a reader who complained stays unsubscribed (they can sign in
    and resubscribe). Returns the reader's status afterwards."""
    if suppression_of(reader) is None:
        raise InvalidInput("This reader is not suppressed.")
    if reader.status == ReaderStatus.BOUNCED:
        if reader.unsubscribed_at is not None:
            reader.status = ReaderStatus.UNSUBSCRIBED
        elif reader.confirmed_at is not None:
            reader.status = ReaderStatus.CONFIRMED
        else:
            reader.status = ReaderStatus.PENDING
    reader.suppression = None
    reader.suppressed_at = None
    reader.suppressed_reason = None
    session.flush()
    return reader.status
