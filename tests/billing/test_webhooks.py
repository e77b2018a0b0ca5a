"""Webhook events: processed once, in any order, re-read from Stripe, all or nothing."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from sqlalchemy import func, select

from newsletter.billing.entitlement import Plan, plan_of
from newsletter.billing.gateway import StripeGateway
from newsletter.billing.models import BillingCustomer, BillingSubscription
from newsletter.readers.models import Reader
from newsletter.tracking.models import Event, EventKind
from tests.billing.conftest import (
    PRICE_ID,
    event_rows,
    make_reader,
    post_event,
    subscription_row,
)


def plan(session, reader: Reader) -> Plan:  # type: ignore[no-untyped-def]
    session.rollback()
    return plan_of(session, reader.id)


def ann_with_customer(session, fake_stripe):  # type: ignore[no-untyped-def]
    reader = make_reader(session, "ann@example.com")
    customer = fake_stripe.add_customer("ann@example.com", {"reader_id": str(reader.id)})
    return reader, customer


def count(session, kind: EventKind) -> int:  # type: ignore[no-untyped-def]
    session.rollback()
    return session.scalar(select(func.count()).select_from(Event).where(Event.kind == kind))


def deliver_twice_at_once(app, event) -> list[str]:  # type: ignore[no-untyped-def]
    """Two deliveries of one event, released together; their answers, sorted."""
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def deliver() -> None:
        client = app.test_client()
        barrier.wait()
        response = post_event(client, event)
        outcomes.append(f"{response.status_code} {response.json['outcome']}")

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return sorted(outcomes)


class TestOnce:
    def test_a_redelivered_event_changes_nothing_and_emails_once(
        self, client, session, fake_stripe, smtp
    ):
        reader, customer = ann_with_customer(session, fake_stripe)
        sub = fake_stripe.add_subscription(customer["id"], PRICE_ID, trial_days=3)
        created = fake_stripe.event("customer.subscription.created", sub)
        first = post_event(client, created)
        assert (first.status_code, first.json["outcome"]) == (200, "synced: trialing")
        assert plan(session, reader) == Plan.TRIAL
        again = post_event(client, created)
        assert (again.status_code, again.json["outcome"]) == (200, "duplicate")
        assert count(session, EventKind.TRIAL_STARTED) == 1

        ending = fake_stripe.event("customer.subscription.trial_will_end", sub)
        assert post_event(client, ending).json["outcome"] == "emailed: trial will end"
        assert post_event(client, ending).json["outcome"] == "duplicate"
        [message] = smtp.wait_for("ann@example.com")
        assert message["Subject"].startswith("Your Both Sides Daily trial ends on ")
        text = message.get_body(("plain",)).get_content()
        assert "continues at $5/month" in text and "http://localhost/account" in text
        assert len(smtp.messages_to("ann@example.com")) == 1
        assert len(event_rows(session)) == 2

    def test_the_same_event_twice_at_once_is_processed_once(self, app, session, fake_stripe, smtp):
        """Two deliveries of one event at once; the unique insert decides. Both read
        Stripe first (the event is too new for the stored-state probe). PostgreSQL makes
        the second insert wait for the first transaction (held open while it reads the
        invoice); on SQLite the second insert waits for the first's write lock."""
        reader, customer = ann_with_customer(session, fake_stripe)
        sub = fake_stripe.add_subscription(customer["id"], PRICE_ID, status="past_due")
        invoice = fake_stripe.add_invoice(sub["id"], status="open")
        event = fake_stripe.event("invoice.payment_failed", invoice)
        fake_stripe.subscription_delay = 0.2
        fake_stripe.invoice_delay = 0.3
        outcomes = deliver_twice_at_once(app, event)
        assert outcomes == ["200 duplicate", "200 emailed: payment failed"]
        assert len(event_rows(session)) == 1
        smtp.wait_for("ann@example.com")
        assert len(smtp.messages_to("ann@example.com")) == 1
        assert plan(session, reader) == Plan.PAID  # past due, within the grace period


class TestWithoutALock:
    """A re-sync event about a stored subscription: the row is read with the event's
    probe, Stripe is read, and the write goes ahead only if the row is still as read
    (PostgreSQL; SQLite takes the locked way for all of it, with the same outcomes)."""

    def test_a_row_written_meanwhile_by_a_fresher_read_is_kept(self, app, session, fake_stripe):  # type: ignore[no-untyped-def]
        from newsletter.billing.gateway import gateway
        from newsletter.billing.subscriptions import Fetched, sync_subscription
        from newsletter.db import utcnow

        reader, customer = ann_with_customer(session, fake_stripe)
        sub = fake_stripe.add_subscription(customer["id"], PRICE_ID, trial_days=7)
        post_event(app.test_client(), fake_stripe.event("customer.subscription.created", sub))
        fake_stripe.set(sub["id"], cancel_at_period_end=True)
        updated = fake_stripe.event("customer.subscription.updated", sub)
        fake_stripe.subscription_delay = 0.5  # the delivery waits on Stripe ...
        answers = []
        delivery = threading.Thread(
            target=lambda: answers.append(post_event(app.test_client(), updated).json)
        )
        delivery.start()
        time.sleep(0.2)
        # ... while a sync from a later read of Stripe stores its state and commits.
        fresher = Fetched({**fake_stripe.subscriptions[sub["id"]], "cancel_at_period_end": False},
                          utcnow() + timedelta(minutes=5))  # fmt: skip
        with app.app_context(), app.extensions["db"].session() as other:
            sync_subscription(other, gateway(), sub["id"], fetched=fresher)
            other.commit()
        delivery.join(30)
        assert answers == [{"received": True, "outcome": "synced: trialing"}]
        row = subscription_row(session, sub["id"])
        assert (row.cancel_at_period_end, row.synced_at) == (False, fresher.at)
        assert [e.event_id for e in event_rows(session)][-1] == updated["id"]

    def test_one_re_sync_event_delivered_twice_at_once_is_processed_once(
        self, app, session, fake_stripe
    ):  # type: ignore[no-untyped-def]
        reader, customer = ann_with_customer(session, fake_stripe)
        sub = fake_stripe.add_subscription(customer["id"], PRICE_ID, trial_days=7)
        post_event(app.test_client(), fake_stripe.event("customer.subscription.created", sub))
        fake_stripe.set(sub["id"], cancel_at_period_end=True)
        updated = fake_stripe.event("customer.subscription.updated", sub)
        fake_stripe.subscription_delay = 0.3  # both have read the row before either writes
        assert deliver_twice_at_once(app, updated) == ["200 duplicate", "200 synced: trialing"]
        assert [e.event_id for e in event_rows(session)].count(updated["id"]) == 1
        assert subscription_row(session, sub["id"]).cancel_at_period_end is True
        assert plan(session, reader) == Plan.TRIAL


class TestOrder:
    def test_any_order_ends_in_stripes_state(self, client, session, fake_stripe):
        reader, customer = ann_with_customer(session, fake_stripe)
        sub = fake_stripe.add_subscription(customer["id"], PRICE_ID, trial_days=7)
        created = fake_stripe.event("customer.subscription.created", sub)
        # The trial converts, then the reader sets it to cancel at the period's end.
        fake_stripe.set(sub["id"], status="active", cancel_at_period_end=True)
        updated = fake_stripe.event("customer.subscription.updated", sub)
        # Delivered backwards: the newest first.
        assert post_event(client, updated).json["outcome"] == "synced: active"
        assert post_event(client, created).json["outcome"] == "synced: active"
        row = subscription_row(session, sub["id"])
        assert (row.status, row.cancel_at_period_end) == ("active", True)
        assert plan(session, reader) == Plan.PAID  # until the period ends

        # A signed payload with a state Stripe no longer has is not believed.
        deleted = fake_stripe.event("customer.subscription.deleted", fake_stripe.cancel(sub["id"]))
        stale = fake_stripe.event("customer.subscription.updated", {**sub, "status": "active"})
        post_event(client, deleted)
        post_event(client, stale)
        assert subscription_row(session, sub["id"]).status == "canceled"
        assert plan(session, reader) == Plan.FREE


class TestAnsweredFromStore:
    """An event about a subscription stored from a read of Stripe made after the event
    was created: that read already shows what the event reports (Stripe's retries after
    an outage arrive like this, hours late, many per subscription)."""

    def test_an_older_event_is_recorded_without_asking_stripe(self, client, session, fake_stripe):
        reader, customer = ann_with_customer(session, fake_stripe)
        sub = fake_stripe.add_subscription(customer["id"], PRICE_ID, trial_days=7)
        invoice = fake_stripe.add_invoice(sub["id"], status="paid", amount=0)
        hour_ago = int(time.time()) - 3600
        created = fake_stripe.event("customer.subscription.created", sub, created=hour_ago)
        paid = fake_stripe.event("invoice.paid", invoice, created=hour_ago)
        assert post_event(client, created).json["outcome"] == "synced: trialing"
        reads = len(fake_stripe.calls("GET", "/v1/subscriptions/"))
        # Stripe's state changed since, but the event is older than our read of it: the
        # change comes with its own (newer) event.
        fake_stripe.set(sub["id"], status="active")
        answer = post_event(client, paid)
        assert answer.json["outcome"] == "synced: trialing (stored from a later read)"
        assert len(fake_stripe.calls("GET", "/v1/subscriptions/")) == reads
        assert post_event(client, paid).json["outcome"] == "duplicate"
        assert [e.event_id for e in event_rows(session)] == [created["id"], paid["id"]]
        assert plan(session, reader) == Plan.TRIAL

        updated = fake_stripe.event("customer.subscription.updated", sub)  # created now
        assert post_event(client, updated).json["outcome"] == "synced: active"
        assert len(fake_stripe.calls("GET", "/v1/subscriptions/")) == reads + 1
        assert plan(session, reader) == Plan.PAID

    def test_events_with_more_to_do_than_a_sync_always_go_the_whole_way(
        self, client, session, fake_stripe, smtp
    ):
        reader, customer = ann_with_customer(session, fake_stripe)
        sub = fake_stripe.add_subscription(customer["id"], PRICE_ID, trial_days=3)
        hour_ago = int(time.time()) - 3600
        created = fake_stripe.event("customer.subscription.created", sub, created=hour_ago)
        ending = fake_stripe.event("customer.subscription.trial_will_end", sub, created=hour_ago)
        assert post_event(client, created).json["outcome"] == "synced: trialing"
        assert post_event(client, ending).json["outcome"] == "emailed: trial will end"
        smtp.wait_for("ann@example.com")


def test_two_first_syncs_of_one_subscription_store_one_row(app, session, fake_stripe):
    """Deterministic form of two events about a new subscription at once: the first sync
    is held uncommitted after storing the row, the second must wait for it (PostgreSQL:
    on the row's insert; SQLite: on the write lock), then sync over that row. One row,
    one trial start."""
    from newsletter.billing.gateway import gateway
    from newsletter.billing.subscriptions import fetch_subscription, sync_subscription

    reader, customer = ann_with_customer(session, fake_stripe)
    sub = fake_stripe.add_subscription(customer["id"], PRICE_ID, trial_days=7)
    db = app.extensions["db"]
    results = []

    def second() -> None:
        with app.app_context(), db.session() as other:
            row = sync_subscription(other, gateway(), sub["id"])
            results.append((row.id, row.status))

    thread = threading.Thread(target=second)
    with app.app_context(), db.session() as first:
        fetched = fetch_subscription(gateway(), sub["id"])
        held = sync_subscription(first, gateway(), sub["id"], fetched=fetched)
        assert held is not None and held.id is not None
        thread.start()
        thread.join(1.0)
        waited = thread.is_alive()
    thread.join(30)
    assert waited, "the second sync must wait for the first"
    assert results == [(held.id, "trialing")]
    session.rollback()
    assert session.scalar(select(func.count()).select_from(BillingSubscription)) == 1
    assert count(session, EventKind.TRIAL_STARTED) == 1
    assert plan(session, reader) == Plan.TRIAL


class TestIgnored:
    def test_what_is_not_ours_answers_200_and_changes_nothing(self, client, session, fake_stripe):
        reader, customer = ann_with_customer(session, fake_stripe)
        fake_stripe.add_price("price_test_other_product", product="prod_other")
        other_price = fake_stripe.add_subscription(customer["id"], "price_test_other_product")
        stranger = fake_stripe.add_customer("stranger@example.com")
        no_reader = fake_stripe.add_subscription(stranger["id"], PRICE_ID)
        cases = [
            (fake_stripe.event("charge.refunded", {"id": "ch_1"}), "ignored: unhandled type"),
            (fake_stripe.event("customer.subscription.created", other_price), "ignored: not ours"),
            (fake_stripe.event("customer.subscription.created", no_reader), "ignored: not ours"),
            (
                fake_stripe.event("customer.subscription.updated", {"id": "sub_gone"}),
                "ignored: not ours",
            ),
            (
                fake_stripe.event("checkout.session.completed", {"id": "cs_1", "mode": "payment"}),
                "ignored: not a subscription checkout",
            ),
            (
                fake_stripe.event("invoice.paid", {"id": "in_1", "customer": customer["id"]}),
                "ignored: no subscription",
            ),
        ]
        for event, outcome in cases:
            response = post_event(client, event)
            assert (response.status_code, response.json["outcome"]) == (200, outcome)
        assert subscription_row(session, other_price["id"]) is None
        assert subscription_row(session, no_reader["id"]) is None
        assert plan(session, reader) == Plan.FREE
        assert len(event_rows(session)) == len(cases)


class TestCustomers:
    def test_matched_by_stored_id_then_metadata_then_email(self, client, session, fake_stripe):
        ann = make_reader(session, "Ann@Example.com")
        bob = make_reader(session, "bob@example.com")
        cat = make_reader(session, "cat@example.com")
        # Metadata, even with another email on the customer.
        by_metadata = fake_stripe.add_customer("other@example.com", {"reader_id": str(ann.id)})
        # A Payment Link's customer: only the email (case aside) says who it is.
        by_email = fake_stripe.add_customer("BOB@example.com")
        # Stored for cat: the stored id wins over metadata pointing at bob.
        stored = fake_stripe.add_customer("x@example.com", {"reader_id": str(bob.id)})
        session.add(BillingCustomer(reader_id=cat.id, stripe_customer_id=stored["id"]))
        session.commit()
        for customer in (by_metadata, by_email, stored):
            sub = fake_stripe.add_subscription(customer["id"], PRICE_ID)
            post_event(client, fake_stripe.event("customer.subscription.created", sub))
        owners = {
            row.stripe_customer_id: row.reader_id
            for row in session.scalars(select(BillingCustomer))
        }
        assert owners == {by_metadata["id"]: ann.id, by_email["id"]: bob.id, stored["id"]: cat.id}
        subs = fake_stripe.subscriptions.values()
        readers = sorted(subscription_row(session, s["id"]).reader_id for s in subs)
        assert readers == sorted([ann.id, bob.id, cat.id])

    def test_customer_updated_and_deleted(self, client, session, fake_stripe):
        reader, customer = ann_with_customer(session, fake_stripe)
        sub = fake_stripe.add_subscription(customer["id"], PRICE_ID)
        post_event(client, fake_stripe.event("customer.subscription.created", sub))
        fake_stripe.customers[customer["id"]]["email"] = "ann.new@example.com"
        updated = post_event(client, fake_stripe.event("customer.updated", customer))
        assert updated.json["outcome"] == "customer updated"
        session.rollback()
        assert session.scalar(select(BillingCustomer.email)) == "ann.new@example.com"
        fake_stripe._delete_customer({}, customer["id"])  # also cancels the subscription
        deleted = post_event(client, fake_stripe.event("customer.deleted", customer))
        assert deleted.json["outcome"] == "customer deleted"
        post_event(client, fake_stripe.event("customer.subscription.deleted", sub))
        session.rollback()
        assert session.scalar(select(BillingCustomer.deleted_at)) is not None
        assert plan(session, reader) == Plan.FREE


class TestInvoices:
    def test_payment_failed_emails_once_per_invoice(self, client, session, fake_stripe, smtp):
        reader, customer = ann_with_customer(session, fake_stripe)
        sub = fake_stripe.add_subscription(customer["id"], PRICE_ID)
        post_event(client, fake_stripe.event("customer.subscription.created", sub))
        fake_stripe.set(sub["id"], status="past_due")
        invoice = fake_stripe.add_invoice(sub["id"], status="open")
        failed = fake_stripe.event("invoice.payment_failed", invoice)
        assert post_event(client, failed).json["outcome"] == "emailed: payment failed"
        [message] = smtp.wait_for("ann@example.com")
        assert message["Subject"] == "We couldn't take your Both Sides Daily payment"
        text = message.get_body(("plain",)).get_content()
        assert invoice["hosted_invoice_url"] in text and "5.00 USD" in text
        assert "for 3 days" in text
        assert subscription_row(session, sub["id"]).status == "past_due"
        assert plan(session, reader) == Plan.PAID  # within the grace period
        # Stripe's retry fails again: another event, the same invoice, no second email.
        retry = fake_stripe.event("invoice.payment_failed", invoice)
        assert post_event(client, retry).json["outcome"] == "no email: already told"
        updated = fake_stripe.event("customer.subscription.updated", sub)
        assert post_event(client, updated).json["outcome"] == "synced: past_due"
        assert len(smtp.messages_to("ann@example.com")) == 1

    def test_a_late_failure_for_an_invoice_paid_since_sends_nothing(
        self, client, session, fake_stripe, smtp
    ):
        reader, customer = ann_with_customer(session, fake_stripe)
        sub = fake_stripe.add_subscription(customer["id"], PRICE_ID, trial_days=7)
        post_event(client, fake_stripe.event("customer.subscription.created", sub))
        invoice = fake_stripe.add_invoice(sub["id"], status="open")
        failed = fake_stripe.event("invoice.payment_failed", invoice)
        # Before it arrives, the retry works and the trial has converted.
        fake_stripe.invoices[invoice["id"]].update(status="paid")
        fake_stripe.set(sub["id"], status="active")
        paid = fake_stripe.event("invoice.paid", fake_stripe.invoices[invoice["id"]])
        assert post_event(client, paid).json["outcome"] == "synced: active"
        assert post_event(client, failed).json["outcome"] == "no email: invoice is paid"
        assert smtp.messages_to("ann@example.com") == []
        assert plan(session, reader) == Plan.PAID
        assert (count(session, EventKind.TRIAL_STARTED), count(session, EventKind.PAID)) == (1, 1)


class TestAllOrNothing:
    def test_a_failure_answers_500_and_writes_nothing(
        self, app, client, session, fake_stripe, smtp
    ):
        reader, customer = ann_with_customer(session, fake_stripe)
        sub = fake_stripe.add_subscription(customer["id"], PRICE_ID, trial_days=3)
        event = fake_stripe.event("customer.subscription.trial_will_end", sub)
        # Stripe's API fails while we handle it (no retries inside the request here).
        app.extensions["stripe_gateway"] = StripeGateway(
            "sk_test_fake", api_base=fake_stripe.url, max_network_retries=0
        )
        fake_stripe.fail_with = 500
        response = post_event(client, event)
        assert response.status_code == 500
        assert event_rows(session) == []  # so Stripe's retry is not taken for a duplicate
        assert session.scalar(select(func.count()).select_from(BillingCustomer)) == 0
        # Stripe retries once its API is back: processed, and one email.
        fake_stripe.fail_with = None
        retry = post_event(client, event)
        assert (retry.status_code, retry.json["outcome"]) == (200, "emailed: trial will end")
        smtp.wait_for("ann@example.com")
        assert len(smtp.messages_to("ann@example.com")) == 1
        assert len(event_rows(session)) == 1


class TestSuppressedAndForeignCustomers:
    def test_billing_mail_skips_a_suppressed_address(self, client, session, fake_stripe, smtp):
        from newsletter.readers.suppression import record_complaint

        reader, customer = ann_with_customer(session, fake_stripe)
        sub = fake_stripe.add_subscription(customer["id"], PRICE_ID, trial_days=3)
        post_event(client, fake_stripe.event("customer.subscription.created", sub))
        record_complaint(session, session.get(Reader, reader.id), "abuse report")
        session.commit()
        ending = fake_stripe.event("customer.subscription.trial_will_end", sub)
        answer = post_event(client, ending)
        assert (answer.status_code, answer.json["outcome"]) == (
            200,
            "no email: address refuses mail",
        )
        fake_stripe.set(sub["id"], status="past_due")
        invoice = fake_stripe.add_invoice(sub["id"], status="open")
        failed = post_event(client, fake_stripe.event("invoice.payment_failed", invoice))
        assert (failed.status_code, failed.json["outcome"]) == (
            200,
            "no email: address refuses mail",
        )
        time.sleep(0.3)  # mail goes after commit; give a wrong send time to arrive
        assert smtp.messages_to("ann@example.com") == []

    def test_metadata_ids_past_the_integer_range_match_nobody(self, client, session, fake_stripe):
        make_reader(session, "ann@example.com")
        for raw in ("99999999999999999999", "-1", "1e9", "١٢"):
            customer = fake_stripe.add_customer(f"{len(raw)}x@example.net", {"reader_id": raw})
            sub = fake_stripe.add_subscription(customer["id"], PRICE_ID)
            answer = post_event(client, fake_stripe.event("customer.subscription.created", sub))
            assert answer.status_code == 200, (raw, answer.json)
            assert subscription_row(session, sub["id"]) is None
