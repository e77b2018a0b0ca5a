"""What the app keeps of Stripe: customers, subscriptions, and the events it has processed.

Stripe is the source of truth. These rows are a cache of it, rewritten from Stripe's API
whenever a webhook, a return from Checkout or the daily reconciliation says something
changed, so every row here can be rebuilt by re-reading Stripe.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from newsletter.db import Base, utcnow


class BillingCustomer(Base):
    """A Stripe customer matched to a reader (by the stored id, else by
    `metadata.reader_id`, else by an email exactly one reader has: `billing.customers`).
    A reader may have several: one the app made at checkout, others made by hand or by a
    Payment Link."""

    __tablename__ = "billing_customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"), index=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(255), unique=True)
    email: Mapped[str | None] = mapped_column(String(254))
    # The last Checkout Session started for this customer: expired before a new one is
    # made, so a reader never holds two open trial offers at once.
    checkout_session_id: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None]


class BillingSubscription(Base):
    """A Stripe subscription as last read from Stripe's API."""

    __tablename__ = "billing_subscriptions"

    id: Mapped[int] = mapped_column(primary_key=True)
    stripe_subscription_id: Mapped[str] = mapped_column(String(255), unique=True)
    reader_id: Mapped[int] = mapped_column(ForeignKey("readers.id", ondelete="CASCADE"), index=True)
    stripe_customer_id: Mapped[str] = mapped_column(String(255))
    price_id: Mapped[str | None] = mapped_column(String(255))
    # False when the subscription moved to another product's price: kept, but it no
    # longer entitles the reader to anything here.
    our_price: Mapped[bool] = mapped_column(default=True)
    # Stripe's status, verbatim: a status Stripe adds later maps to the free plan.
    status: Mapped[str] = mapped_column(String(32))
    trial_start: Mapped[datetime | None]
    trial_end: Mapped[datetime | None]
    current_period_start: Mapped[datetime | None]
    current_period_end: Mapped[datetime | None]
    cancel_at_period_end: Mapped[bool] = mapped_column(default=False)
    cancel_at: Mapped[datetime | None]
    canceled_at: Mapped[datetime | None]
    ended_at: Mapped[datetime | None]
    # Start of the current past_due stretch: the grace period counts from here.
    past_due_since: Mapped[datetime | None]
    # The failed invoice the reader was last emailed about: one email per failed invoice,
    # however many retries, events or syncs report it.
    payment_failure_invoice_id: Mapped[str | None] = mapped_column(String(255))
    # When the funnel events were recorded (once each per subscription).
    trial_recorded_at: Mapped[datetime | None]
    paid_recorded_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When this row was last rewritten from Stripe's API.
    synced_at: Mapped[datetime] = mapped_column(default=utcnow)


class StripeEvent(Base):
    """One row per Stripe event id ever accepted: the primary key is what makes a
    redelivered event, or the same event delivered twice at once, a no-op."""

    __tablename__ = "stripe_events"

    event_id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100))
    # Stripe's `created`, and when it was processed here.
    created: Mapped[datetime | None]
    received_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
