"""Erasing a reader at their request (GDPR art. 17, CCPA), and the hash that remembers it.

The reader row stays, anonymised, so every count built on it (the dashboard's totals,
each edition's deliveries, clicks and reads) stays what it was; what could identify the
person goes: the address (here and wherever it was copied: audit entries, bounce
replies, billing), IP addresses and prefixes, user agents. Their Stripe customer is
deleted first, so a failure there leaves everything here untouched for a retry.

The address is kept only as a keyed hash (HMAC-SHA256 of the lower-cased address with
SECRET_KEY), which `newsletter.readers.importing` checks so an old export cannot bring
it back. Signing up again through the form IS allowed: that is a fresh consent, given
by the person themselves, and makes a new reader.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from datetime import datetime

from flask import current_app
from sqlalchemy import func, or_, select, update
from sqlalchemy.orm import Session

from newsletter.admin.models import AuditEntry
from newsletter.billing.gateway import gateway
from newsletter.billing.models import BillingCustomer
from newsletter.db import utcnow
from newsletter.delivery.models import Delivery
from newsletter.errors import InvalidToken
from newsletter.readers.models import Consent, ErasedAddress, Reader, ReaderStatus
from newsletter.readers.suppression import email_reader
from newsletter.tokens import Purpose, make_token, read_token
from newsletter.tracking.models import Click

ERASED = "[erased reader]"


def address_hashes(email_keys: Iterable[str], secret: str | None = None) -> list[str]:
    """The erasure hash of each lower-cased address, in order."""
    key = (secret or current_app.config["SECRET_KEY"]).encode()
    return [
        hmac.new(key, b"erased-address:" + k.lower().encode(), hashlib.sha256).hexdigest()
        for k in email_keys
    ]


def is_erased(session: Session, email: str) -> bool:
    (digest,) = address_hashes([email.lower()])
    return session.get(ErasedAddress, digest) is not None


def anonymous_address(reader_id: int) -> str:
    """What stands in for an erased address (`.invalid` can never receive mail)."""
    return f"erased-{reader_id}@erased.invalid"


def erase_reader(session: Session, reader: Reader, *, now: datetime | None = None) -> None:
    """Erase `reader`'s personal data (flushes; the caller commits). Their Stripe
    customers are deleted first (a Stripe error propagates with nothing changed here)."""
    if reader.erased_at is not None:
        return
    now = now or utcnow()
    customers = list(
        session.scalars(select(BillingCustomer).where(BillingCustomer.reader_id == reader.id))
    )
    live = [c.stripe_customer_id for c in customers if c.deleted_at is None]
    if live and current_app.config.get("STRIPE_SECRET_KEY"):
        stripe = gateway()
        for customer_id in live:
            stripe.delete_customer(customer_id)
    addresses = sorted({reader.email, reader.email_key})
    (digest,) = address_hashes([reader.email_key])
    if session.get(ErasedAddress, digest) is None:
        session.add(ErasedAddress(address_hash=digest, erased_at=now))
    for customer in customers:
        customer.email = None
        customer.deleted_at = customer.deleted_at or now
    session.execute(
        update(Consent).where(Consent.reader_id == reader.id).values(ip=None, user_agent=None)
    )
    session.execute(
        update(Click).where(Click.reader_id == reader.id).values(ip_prefix=None, user_agent=None)
    )
    # A bounce reply often quotes the address.
    session.execute(update(Delivery).where(Delivery.reader_id == reader.id).values(last_reply=None))
    _scrub_audit_log(session, addresses)
    if reader.status in (ReaderStatus.CONFIRMED, ReaderStatus.PENDING):
        reader.status = ReaderStatus.UNSUBSCRIBED
        reader.unsubscribed_at = reader.unsubscribed_at or now
    anonymous = anonymous_address(reader.id)
    reader.email = reader.email_key = anonymous
    reader.suppressed_reason = None
    reader.is_staff = False
    reader.session_version += 1  # every session of theirs ends
    reader.signin_nonce += 1  # and every sign-in link
    reader.invite_queued_at = None
    reader.confirmation_sent_at = reader.signin_sent_at = None
    reader.erased_at = now
    session.flush()


def _scrub_audit_log(session: Session, addresses: list[str]) -> None:
    """Staff actions name the reader by address; the entries stay, without it."""
    target, detail, staff = AuditEntry.target, AuditEntry.detail, AuditEntry.staff_email
    for address in addresses:
        pattern = f"%{address.lower()}%"
        session.execute(
            update(AuditEntry)
            .where(
                or_(
                    func.lower(target).like(pattern),
                    func.lower(detail).like(pattern),
                    func.lower(staff).like(pattern),
                )
            )
            .values(
                target=func.replace(target, address, ERASED),
                detail=func.replace(detail, address, ERASED),
                staff_email=func.replace(staff, address, ERASED),
            )
            .execution_options(synchronize_session=False)
        )


# --- the reader's own request: a POST, then an emailed link ------------------------------


def erase_url(reader: Reader) -> str:
    token = make_token(Purpose.ERASE, {"r": reader.id, "e": reader.email_key})
    return current_app.config["BASE_URL"] + f"/account/delete/{token}"


def request_erasure(session: Session, reader: Reader) -> bool:
    """Email the link that confirms the deletion. False when the address may not be
    emailed (suppressed): staff then erase on the reader's written request."""
    context = {
        "erase_url": erase_url(reader),
        "valid_hours": current_app.config["ERASE_TOKEN_MAX_AGE"] // 3600,
    }
    return email_reader(session, reader, "erase", context)


def reader_for_erase_token(session: Session, token: str) -> Reader:
    payload = read_token(Purpose.ERASE, token, max_age=current_app.config["ERASE_TOKEN_MAX_AGE"])
    reader = session.get(Reader, payload.get("r"))
    if reader is None or reader.erased_at is not None or reader.email_key != payload.get("e"):
        raise InvalidToken("This link is not valid any more.")
    return reader
