"""The entitlement rule, on subscription rows as Stripe left them (no database needed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from newsletter.billing.entitlement import Plan, best, plan_for, scheduled_end
from newsletter.billing.models import BillingSubscription
from newsletter.billing.stripe_objects import (
    SubscriptionData,
    invoice_subscription_id,
    payment_failed,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def sub(status: str, **fields) -> BillingSubscription:  # type: ignore[no-untyped-def]
    values = {
        "our_price": True,
        "cancel_at_period_end": False,
        "cancel_at": None,
        "current_period_end": NOW + 20 * DAY,
        "past_due_since": None,
    }
    values.update(fields)
    return BillingSubscription(status=status, **values)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("trialing", Plan.TRIAL),
        ("active", Plan.PAID),
        ("past_due", Plan.PAID),
        ("unpaid", Plan.FREE),
        ("canceled", Plan.FREE),
        ("incomplete", Plan.FREE),
        ("incomplete_expired", Plan.FREE),
        ("paused", Plan.FREE),
        ("a_status_stripe_adds_later", Plan.FREE),
    ],
)
def test_each_status(status, expected):
    assert plan_for(sub(status, past_due_since=NOW), NOW) == expected


def test_set_to_cancel_stays_paid_until_the_period_ends():
    canceling = sub("active", cancel_at_period_end=True, current_period_end=NOW + DAY)
    assert plan_for(canceling, NOW) == Plan.PAID
    assert scheduled_end(canceling) == NOW + DAY
    # The deleted webhook is late: the period is over all the same.
    assert plan_for(canceling, NOW + DAY) == Plan.FREE
    at_date = sub("trialing", cancel_at=NOW + 2 * DAY)
    assert (plan_for(at_date, NOW), plan_for(at_date, NOW + 3 * DAY)) == (Plan.TRIAL, Plan.FREE)


def test_past_due_grace_period():
    late = sub("past_due", past_due_since=NOW - 2 * DAY)
    assert plan_for(late, NOW) == Plan.PAID
    assert plan_for(late, NOW + DAY) == Plan.FREE  # three days after the failure
    assert plan_for(late, NOW, grace=timedelta(days=10)) == Plan.PAID


def test_another_products_subscription_entitles_nothing():
    assert plan_for(sub("active", our_price=False), NOW) == Plan.FREE


def test_the_best_of_several():
    subs = [sub("canceled"), sub("trialing"), sub("active"), sub("past_due", past_due_since=NOW)]
    plan, chosen = best(subs, NOW)
    assert (plan, chosen.status) == (Plan.PAID, "active")
    assert best([], NOW) == (Plan.FREE, None)


class TestStripeShapes:
    def test_current_api_period_on_the_items(self):
        data = SubscriptionData.from_stripe(
            {
                "id": "sub_1",
                "customer": {"id": "cus_1", "object": "customer"},  # expanded
                "status": "active",
                "items": {
                    "data": [
                        {
                            "price": {"id": "price_1", "lookup_key": "k"},
                            "current_period_start": 1_700_000_000,
                            "current_period_end": 1_702_592_000,
                        }
                    ]
                },
                "latest_invoice": "in_1",
            }
        )
        assert (data.customer_id, data.price_ids, data.lookup_keys) == (
            "cus_1",
            ("price_1",),
            ("k",),
        )
        assert data.current_period_end == datetime.fromtimestamp(1_702_592_000, UTC)
        assert data.latest_invoice_id == "in_1"
        assert data.for_price("price_1") and not data.for_price("price_2")

    def test_older_api_and_localstripe_period_on_top_and_plans(self):
        data = SubscriptionData.from_stripe(
            {
                "id": "sub_1",
                "customer": "cus_1",
                "status": "trialing",
                "items": {"data": [{"plan": {"id": "plan_1"}}]},
                "current_period_end": 1_702_592_000,
                "trial_end": 1_701_000_000,
            }
        )
        assert data.price_ids == ("plan_1",)
        assert data.current_period_end == datetime.fromtimestamp(1_702_592_000, UTC)
        assert data.trial_end == datetime.fromtimestamp(1_701_000_000, UTC)

    def test_invoice_subscription_in_both_shapes(self):
        new = {"parent": {"subscription_details": {"subscription": "sub_new"}}}
        assert invoice_subscription_id(new) == "sub_new"
        assert invoice_subscription_id({"subscription": "sub_old", "parent": None}) == "sub_old"
        assert invoice_subscription_id({"id": "in_1"}) is None

    def test_what_counts_as_a_failed_payment(self):
        assert payment_failed({"status": "open", "attempted": True, "attempt_count": 1})
        assert not payment_failed({"status": "open", "attempted": False, "attempt_count": 0})
        assert not payment_failed({"status": "paid", "attempted": True})
        assert not payment_failed({"status": "void", "attempted": True})


STATUSES = ("trialing", "active", "past_due", "unpaid", "canceled", "incomplete", "paused", "new")


@pytest.mark.parametrize("our_price", [True, False])
@pytest.mark.parametrize("status", STATUSES)
def test_certainly_free_never_contradicts_the_rule(status, our_price):  # type: ignore[no-untyped-def]
    """The meter's one-statement charge skips the rule when `certainly_free` holds: it
    must hold only where `plan_for` says free."""
    from sqlalchemy import create_engine, literal, select
    from sqlalchemy.orm import Session

    from newsletter.billing.entitlement import certainly_free

    engine = create_engine("sqlite://")
    BillingSubscription.__table__.create(engine)
    row = sub(status, our_price=our_price, past_due_since=NOW)
    row.reader_id, row.stripe_subscription_id, row.stripe_customer_id = 1, "sub_1", "cus_1"
    row.synced_at = row.created_at = NOW
    with Session(engine) as session:
        assert session.scalar(select(certainly_free(literal(1)))) is True
        session.add(row)
        session.flush()
        free = session.scalar(select(certainly_free(literal(1))))
        if plan_for(row, NOW) != Plan.FREE:
            assert free is False
        assert session.scalar(select(certainly_free(literal(2)))) is True
