"""The daily reconciliation: webhooks that never arrived heal from Stripe's state."""

from __future__ import annotations

from datetime import timedelta

from newsletter.billing.entitlement import Plan, plan_of
from newsletter.billing.models import StripeEvent
from newsletter.billing.reconcile import reconcile
from newsletter.db import utcnow
from tests.billing.conftest import PRICE_ID, event_rows, make_reader, subscription_row


def plan(session, reader_id: int) -> Plan:  # type: ignore[no-untyped-def]
    session.rollback()
    return plan_of(session, reader_id)


def test_missed_webhooks_heal(app, session, fake_stripe, smtp):
    ann = make_reader(session, "ann@example.com").id
    bob = make_reader(session, "bob@example.com").id
    a = fake_stripe.add_customer("ann@example.com", {"reader_id": str(ann)})
    b = fake_stripe.add_customer("bob@example.com")
    # Created at Stripe; the webhooks were lost.
    trial = fake_stripe.add_subscription(a["id"], PRICE_ID, trial_days=7)
    paid = fake_stripe.add_subscription(b["id"], PRICE_ID)
    fake_stripe.add_price("price_test_other", product="prod_other")
    fake_stripe.add_subscription(b["id"], "price_test_other")
    session.add(
        StripeEvent(event_id="evt_test_old", type="x", received_at=utcnow() - timedelta(days=40))
    )
    session.commit()

    runner = app.test_cli_runner()
    result = runner.invoke(args=["stripe", "reconcile"])
    assert result.exit_code == 0, result.output
    assert "listed 2, rechecked 0, changed 2, failed 0, pruned 1 old events" in result.output
    assert (plan(session, ann), plan(session, bob)) == (Plan.TRIAL, Plan.PAID)
    assert event_rows(session) == []

    # Cancelled at Stripe (no longer listed) and a payment failure, both unannounced.
    fake_stripe.cancel(trial["id"])
    fake_stripe.set(paid["id"], status="past_due")
    invoice = fake_stripe.add_invoice(paid["id"], status="open")
    with app.app_context():
        from newsletter.billing.gateway import gateway

        report = reconcile(app.extensions["db"], gateway())
    assert (report.listed, report.rechecked, report.changed, report.failed) == (1, 1, 2, [])
    assert plan(session, ann) == Plan.FREE
    assert subscription_row(session, paid["id"]).payment_failure_invoice_id == invoice["id"]
    [message] = smtp.wait_for("bob@example.com")
    assert invoice["hosted_invoice_url"] in message.get_body(("plain",)).get_content()

    # Nothing new at Stripe: nothing changes, nobody is emailed twice.
    with app.app_context():
        report = reconcile(app.extensions["db"], gateway())
    assert report.changed == 0
    assert len(smtp.messages_to("bob@example.com")) == 1


def test_the_worker_runs_it_daily(monkeypatch, tmp_path):
    import jobs.tasks
    from jobs.scheduler import build_scheduler
    from newsletter.app import create_app

    app = create_app({"DATABASE_URL": f"sqlite:///{tmp_path}/w.db", "SECRET_KEY": "k" * 40})
    [job] = [j for j in build_scheduler(app).get_jobs() if j.id == "reconcile_billing"]
    assert str(job.trigger) == "cron[hour='3', minute='17']"
    app.extensions["db"].dispose()

    # Without STRIPE_SECRET_KEY the job logs and returns: nothing to reach.
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path}/job.db")
    monkeypatch.setenv("NEWSLETTER_INSTANCE", str(tmp_path))
    monkeypatch.delenv("STRIPE_SECRET_KEY", raising=False)
    jobs.tasks.job_app.cache_clear()
    try:
        jobs.tasks.reconcile_billing()
    finally:
        jobs.tasks.job_app.cache_clear()
