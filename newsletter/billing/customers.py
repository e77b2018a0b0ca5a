"""Stripe customers and the readers they belong to: matched by the stored customer id,
else `metadata.reader_id`, else an email exactly one reader has."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import stripe
from sqlalchemy import bindparam, func, select
from sqlalchemy.orm import Session

from newsletter.billing.gateway import StripeGateway, is_not_found
from newsletter.billing.models import BillingCustomer
from newsletter.billing.stripe_objects import metadata_id
from newsletter.db import DriverStatement, upsert, utcnow
from newsletter.readers.models import Reader


def match_customer(session: Session, customer: Mapping[str, Any]) -> int | None:
    """The matching rule after the stored id: `metadata.reader_id`, else the email when
    exactly one reader has it."""
    reader_id = metadata_id((customer.get("metadata") or {}).get("reader_id"))
    if reader_id is not None and session.get(Reader, reader_id) is not None:
        return reader_id
    email = customer.get("email")
    if isinstance(email, str) and email.strip():
        ids = session.scalars(
            select(Reader.id).where(Reader.email_key == email.strip().lower()).limit(2)
        ).all()
        if len(ids) == 1:
            return ids[0]
    return None


def _store_customer(
    session: Session, reader_id: int, customer_id: str, email: str | None
) -> BillingCustomer:
    session.execute(
        upsert(BillingCustomer, session)
        .values(
            reader_id=reader_id, stripe_customer_id=customer_id, email=email, created_at=utcnow()
        )
        .on_conflict_do_nothing(index_elements=["stripe_customer_id"])
    )
    row = session.scalar(
        select(BillingCustomer)
        .where(BillingCustomer.stripe_customer_id == customer_id)
        .execution_options(populate_existing=True)
    )
    assert row is not None
    return row


_CUSTOMER_READER = DriverStatement(
    select(BillingCustomer.__table__.c.reader_id).where(
        BillingCustomer.__table__.c.stripe_customer_id == bindparam("customer_id")
    )
)


def stored_reader(session: Session, customer_id: str) -> int | None:
    """The reader stored for a Stripe customer, if any; one statement, no Stripe call."""
    return _CUSTOMER_READER.scalar(session.connection(), {"customer_id": customer_id})


def reader_for_customer(session: Session, gw: StripeGateway, customer_id: str) -> int | None:
    """The reader a Stripe customer belongs to, remembering a new match. Calls Stripe only
    for a customer no stored row names (one not made by our checkout)."""
    stored = stored_reader(session, customer_id)
    if stored is not None:
        return stored
    try:
        customer = gw.retrieve_customer(customer_id)
    except stripe.StripeError as exc:
        if is_not_found(exc):
            return None
        raise
    if customer.get("deleted"):
        return None
    reader_id = match_customer(session, customer)
    if reader_id is not None:
        _store_customer(session, reader_id, customer_id, customer.get("email"))
    return reader_id


def current_customer(session: Session, reader: Reader) -> BillingCustomer | None:
    return session.scalar(
        select(BillingCustomer)
        .where(BillingCustomer.reader_id == reader.id, BillingCustomer.deleted_at.is_(None))
        .order_by(BillingCustomer.id.desc())
        .limit(1)
    )


def ensure_customer(session: Session, gw: StripeGateway, reader: Reader) -> BillingCustomer:
    """The reader's Stripe customer, made (with `metadata.reader_id`) on first need."""
    existing = current_customer(session, reader)
    if existing is not None:
        return existing
    made_before = session.scalar(
        select(func.count())
        .select_from(BillingCustomer)
        .where(BillingCustomer.reader_id == reader.id)
    )
    # The idempotency key makes a retried or doubled request reuse one customer.
    customer = gw.create_customer(
        email=reader.email,
        reader_id=reader.id,
        idempotency_key=f"bsd-customer-{reader.id}-{made_before}",
    )
    return _store_customer(session, reader.id, customer["id"], customer.get("email"))


def fetch_customer(gw: StripeGateway, customer_id: str) -> dict[str, Any]:
    """The customer as Stripe has it; one Stripe no longer has reads as deleted."""
    try:
        return gw.retrieve_customer(customer_id)
    except stripe.StripeError as exc:
        if not is_not_found(exc):
            raise
        return {"id": customer_id, "deleted": True}


def refresh_customer(session: Session, customer: Mapping[str, Any]) -> str:
    """`customer.updated` / `customer.deleted`: keep the email and deletion of `customer`,
    read from Stripe (`fetch_customer`) before the caller's transaction began."""
    row = session.scalar(
        select(BillingCustomer).where(BillingCustomer.stripe_customer_id == customer["id"])
    )
    if row is None:
        return "ignored: unknown customer"
    if customer.get("deleted"):
        if row.deleted_at is None:
            row.deleted_at = utcnow()
            row.checkout_session_id = None
        session.flush()
        return "customer deleted"
    row.email = customer.get("email")
    row.deleted_at = None
    session.flush()
    return "customer updated"
