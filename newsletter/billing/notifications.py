"""The billing emails: the trial ending, and a payment that failed (once per invoice).

Billing mail is transactional: it goes after an unsubscribe from the daily email too,
but never to a suppressed address (`email_reader` decides), and only after commit."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from flask import current_app
from sqlalchemy.orm import Session

from newsletter.billing.models import BillingSubscription
from newsletter.billing.stripe_objects import payment_failed
from newsletter.readers.models import Reader
from newsletter.readers.suppression import email_reader


def local_date(moment: datetime, timezone: str) -> str:
    local = moment.astimezone(ZoneInfo(timezone))
    return f"{local:%B} {local.day}, {local.year}"


def notify_trial_will_end(session: Session, row: BillingSubscription) -> bool:
    reader = session.get(Reader, row.reader_id)
    if reader is None or row.trial_end is None:
        return False
    cfg = current_app.config
    return email_reader(
        session,
        reader,
        "trial_will_end",
        {
            "trial_end": local_date(row.trial_end, reader.timezone),
            "price": cfg.get("PRICE_LABEL", "$5/month"),
            "renews": not (row.cancel_at_period_end or row.cancel_at),
            "account_url": f"{cfg['BASE_URL']}/account",
        },
    )


def notify_payment_failed(session: Session, reader_id: int, invoice: Mapping[str, Any]) -> bool:
    reader = session.get(Reader, reader_id)
    if reader is None:
        return False
    cfg = current_app.config
    account_url = f"{cfg['BASE_URL']}/account"
    amount = invoice.get("amount_due")
    currency = str(invoice.get("currency") or "usd").upper()
    return email_reader(
        session,
        reader,
        "payment_failed",
        {
            "amount": f"{amount / 100:.2f} {currency}" if isinstance(amount, int) else None,
            "fix_url": invoice.get("hosted_invoice_url") or account_url,
            "account_url": account_url,
            "grace_days": int(cfg.get("BILLING_GRACE_DAYS", 3)),
        },
    )


def notify_failed_invoice(
    session: Session,
    row: BillingSubscription,
    invoice_id: str | None,
    invoice: Mapping[str, Any] | None,
) -> str:
    """Email the reader about a failed invoice, once per invoice; `invoice` is it as read
    from Stripe before the caller locked anything (None: Stripe has no such invoice).
    Marks `row.payment_failure_invoice_id` when it tells; the caller writes the row.
    Returns what happened."""
    if not row.our_price or not invoice_id:
        return "no email: no invoice"
    if invoice_id == row.payment_failure_invoice_id:
        return "no email: already told"
    if invoice is None:
        return "no email: invoice not found"
    if not payment_failed(invoice):
        # Paid or voided since (events can arrive late): nothing for the reader to fix.
        return f"no email: invoice is {invoice.get('status')}"
    row.payment_failure_invoice_id = invoice_id
    if notify_payment_failed(session, row.reader_id, invoice):
        return "emailed: payment failed"
    return "no email: address refuses mail"
