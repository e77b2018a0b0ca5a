"""A reader's data rights: "Download my data" holds everything their rows hold; "Delete my
account" (a POST, then an emailed link whose page has the button) erases them, deletes
their Stripe customer (localstripe), leaves the dashboard's totals as they were, and
keeps an import from bringing the address back."""

from __future__ import annotations

import json
from typing import Any

import pytest
import stripe
from flask import Flask
from sqlalchemy import create_engine, inspect, select, text

from newsletter.admin import dashboard
from newsletter.admin.models import AuditEntry
from newsletter.auth.session import session_values
from newsletter.billing.models import BillingCustomer, BillingSubscription
from newsletter.delivery.models import Delivery, DeliveryState
from newsletter.readers.data import reader_links
from newsletter.readers.models import Reader, ReaderStatus
from newsletter.tracking.models import Event, EventKind, Read
from tests.billing.conftest import LocalStripe
from tests.conftest import csrf_token, links_in
from tests.helpers import path_of
from tests.tracking.conftest import NOW, clicks_written, send_edition

ADDRESS = "ann@example.com"
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) AnnsOwnBrowser/93.1"
IP = "198.51.100.77"
IP_PREFIX = "198.51.100.0/24"


@pytest.fixture
def app_settings(localstripe: LocalStripe) -> dict[str, Any]:
    url = localstripe.url
    return {"STRIPE_SECRET_KEY": "sk_test_localstripe", "STRIPE_API_BASE": url}


@pytest.fixture
def peer(localstripe: LocalStripe) -> stripe.StripeClient:
    url = localstripe.url
    return stripe.StripeClient("sk_test_localstripe", base_addresses={"api": url})


def as_ann(client) -> dict[str, Any]:
    return {"headers": {"User-Agent": USER_AGENT}, "environ_base": {"REMOTE_ADDR": IP}}


@pytest.fixture
def ann(app: Flask, client, session, smtp, peer) -> int:
    """Ann, with a row in every table a reader's activity fills: consents (with IP and
    user agent), a delivery, clicks through the real tracked links, a read, an event, a
    Stripe customer (made in localstripe) and a subscription."""
    sent = send_edition(app, session, smtp)
    reader = session.scalar(select(Reader).where(Reader.email_key == ADDRESS))
    values, reader_id = session_values(reader), reader.id
    session.rollback()  # hold no transaction open while the app writes
    with client.session_transaction() as cookie:
        cookie.update(values)
    # Consents the way the account page records them, from Ann's browser.
    token = csrf_token(client, "/account")
    client.post("/account/unsubscribe", data={"csrf_token": token}, **as_ann(client))
    client.post("/account/resubscribe", data={"csrf_token": token}, **as_ann(client))
    for link in sent.links[ADDRESS][:2]:
        client.get(path_of(link), **as_ann(client))
    clicks_written(app)
    customer = peer.v1.customers.create(params={"email": ADDRESS})
    edition_id, story_id = sent.edition.id, sent.edition.stories[0].story_id
    session.rollback()
    session.add_all(
        [
            Delivery(
                edition_id=edition_id,
                reader_id=reader_id,
                plan="free",
                state=DeliveryState.SENT,
                sent_at=NOW,
                message_id="<m1@bothsides.test>",
                last_reply=f"250 2.0.0 Ok: queued for <{ADDRESS}>",
            ),
            Read(reader_id=reader_id, story_id=story_id, month=NOW.strftime("%Y-%m"), slot=1),
            Event(kind=EventKind.PAYWALL_IMPRESSION, reader_id=reader_id, story_id=story_id),
            BillingCustomer(reader_id=reader_id, stripe_customer_id=customer.id, email=ADDRESS),
            BillingSubscription(
                stripe_subscription_id="sub_ann",
                reader_id=reader_id,
                stripe_customer_id=customer.id,
                status="canceled",
            ),
            AuditEntry(
                staff_id=None,
                staff_email="editor@example.com",
                action="reader.suppress",
                target=ADDRESS,
                detail=f"asked by {ADDRESS} on the phone",
            ),
        ]
    )
    session.commit()
    return reader_id


def every_value(url: str) -> list[tuple[str, str, str]]:
    """(table, column, text) of every non-empty cell of every table in the database."""
    engine = create_engine(url)
    found = []
    with engine.connect() as conn:
        for table in inspect(engine).get_table_names():
            query = text(f'SELECT * FROM "{table}"')  # noqa: S608 (names from the schema)
            rows = conn.execute(query).mappings()
            for row in rows:
                found += [(table, k, str(v)) for k, v in row.items() if v is not None]
    engine.dispose()
    return found


def figures(app: Flask, session) -> dict[str, Any]:
    session.rollback()
    with app.app_context():
        plans = dashboard.readers_by_plan(session, days=3)
        return {
            "readers": dashboard.totals(session).readers,
            "editions_sent": dashboard.totals(session).editions_sent,
            "editions": [vars(e) for e in dashboard.editions_sent(session)],
            "clicks": [vars(c) for c in dashboard.clicks_per_story(session)],
            "funnel": vars(dashboard.funnel(session)),
            "plans_before_today": plans[:-1],
        }


class TestDownload:
    def test_the_json_holds_every_column_of_every_reader_row(self, app, client, ann, session):
        response = client.get("/account/data.json")
        assert response.status_code == 200
        assert "attachment" in response.headers["Content-Disposition"]
        data = json.loads(response.get_data())
        assert data["profile"]["email"] == ADDRESS
        assert set(data["profile"]) == {c.name for c in Reader.__table__.columns}
        assert data["billing"]["plan"] == "free"
        for table, column in reader_links():
            name = table.name if column == "reader_id" else f"{table.name} ({column})"
            assert name in data["tables"], name
            expected = session.execute(select(table).where(table.c[column] == ann)).mappings().all()
            got = data["tables"][name]
            assert len(got) == len(expected), name
            for row in got:
                assert set(row) == {c.name for c in table.columns}, name
        for table in ("consents", "deliveries", "clicks", "reads", "events"):
            assert data["tables"][table], f"Ann has {table}"
        assert data["tables"]["billing_customers"][0]["email"] == ADDRESS
        assert {c["user_agent"] for c in data["tables"]["clicks"]} == {USER_AGENT}
        assert data["tables"]["clicks"][0]["ip_prefix"] == IP_PREFIX

    def test_signed_out_gets_no_data(self, app, client):
        response = client.get("/account/data.json")
        assert response.status_code in (302, 303, 401)


class TestDelete:
    def test_post_then_emailed_link_then_button_erases_everything(
        self, app, client, ann, session, smtp, peer, runner, database_url
    ):
        before = figures(app, session)
        customer_id = session.scalar(select(BillingCustomer.stripe_customer_id))
        assert ADDRESS in {v for _, _, v in every_value(database_url)}

        response = client.post(
            "/account/delete", data={"csrf_token": csrf_token(client, "/account")}
        )
        assert response.status_code == 200
        assert "Check your email" in response.get_data(as_text=True)
        [message] = [m for m in smtp.wait_for(ADDRESS, count=2) if "delete" in m["Subject"]]
        link = path_of(links_in(message, "/account/delete/")[0])

        # A link scanner's GET (with no session) shows the page and erases nothing.
        page = app.test_client().get(link)
        assert page.status_code == 200 and "Delete my account" in page.get_data(as_text=True)
        session.rollback()
        assert session.get(Reader, ann).erased_at is None

        token = csrf_token(client, link)
        done = client.post(link, data={"csrf_token": token})
        assert done.status_code == 200, done.get_data(as_text=True)
        assert "Your account is deleted" in done.get_data(as_text=True)

        # Nothing anywhere holds her address, IP (prefix) or user agent.
        for table, column, value in every_value(database_url):
            lowered = value.lower()
            assert ADDRESS not in lowered, (table, column, value)
            assert IP not in value and IP_PREFIX not in value, (table, column, value)
            assert USER_AGENT not in value, (table, column, value)
        session.rollback()
        erased = session.get(Reader, ann)
        assert erased.erased_at is not None
        assert erased.status == ReaderStatus.UNSUBSCRIBED

        # Stripe's customer is gone.
        with pytest.raises(stripe.InvalidRequestError):
            peer.v1.customers.retrieve(customer_id)

        # The dashboard counts what it counted.
        assert figures(app, session) == before

        # The audit log says it happened, not who it was.
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "reader.erase"))
        assert entry.target == "" and entry.staff_id is None
        assert "ann" not in (entry.detail + entry.staff_email).lower()

        # Signed out everywhere, and the link is used up.
        assert client.get("/api/me").status_code == 401
        assert client.get(link).status_code == 400

        # An old export cannot bring her back...
        csv = f"Email Address,CONFIRM_TIME\n{ADDRESS.upper()},2023-01-01 00:00:00\n"
        path = app.config["OUTBOX_PATH"].parent / "again.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(csv)
        result = runner.invoke(args=["readers", "import", str(path)])
        assert "erased here at the owner's request" in result.output
        assert "0 accepted" in result.output

        # ...but she may sign up again herself: a fresh consent, a new reader.
        fresh = app.test_client()
        fresh.post("/signup", data={"email": ADDRESS, "csrf_token": csrf_token(fresh)})
        session.rollback()
        again = session.scalar(select(Reader).where(Reader.email_key == ADDRESS))
        assert again is not None and again.id != ann and again.status == ReaderStatus.PENDING

    def test_delete_request_needs_csrf_and_a_session(self, app, client, ann, smtp):
        assert client.post("/account/delete").status_code == 400
        assert app.test_client().post("/account/delete").status_code in (302, 303, 400, 401)

    def test_staff_erase_for_a_request_received_by_email(
        self, app, ann, session, peer, database_url
    ):
        from tests.admin.conftest import signed_in_as

        staff = app.test_client()
        signed_in_as(staff, app, "editor@example.com", staff=True)
        token = csrf_token(staff, f"/admin/readers/{ann}")
        unconfirmed = staff.post(f"/admin/readers/{ann}/erase", data={"csrf_token": token})
        assert unconfirmed.status_code == 303
        session.rollback()
        assert session.get(Reader, ann).erased_at is None

        response = staff.post(
            f"/admin/readers/{ann}/erase", data={"csrf_token": token, "confirm": "erase"}
        )
        assert response.status_code == 303
        assert not [v for _, _, v in every_value(database_url) if ADDRESS in v.lower()]
        session.rollback()
        entry = session.scalar(select(AuditEntry).where(AuditEntry.action == "reader.erase"))
        assert entry.staff_email == "editor@example.com"
        assert entry.target == ""
        assert "erased" in staff.get(f"/admin/readers/{ann}").get_data(as_text=True).lower()

    def test_staff_erase_needs_csrf(self, app, ann, session):
        from tests.admin.conftest import signed_in_as

        staff = app.test_client()
        signed_in_as(staff, app, "editor@example.com", staff=True)
        assert (
            staff.post(f"/admin/readers/{ann}/erase", data={"confirm": "erase"}).status_code == 400
        )
        session.rollback()
        assert session.get(Reader, ann).erased_at is None
