"""Reader care: search, what we know about a reader, resend confirmation, suppress."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from newsletter.admin.models import AuditEntry
from newsletter.db import utcnow
from newsletter.delivery.models import Delivery, DeliveryState
from newsletter.readers.models import Reader, ReaderStatus
from newsletter.tracking.models import Click, Read
from tests.admin.conftest import STAFF, build_edition, fresh, post
from tests.conftest import csrf_token, links_in


def test_search_and_a_readers_status_plan_meter_deliveries_and_clicks(app, staff, session):
    edition = build_edition(app, session, count=2)
    ann = session.scalar(select(Reader).where(Reader.email_key == "ann@example.com"))
    story_ids = [es.story_id for es in edition.stories]
    session.add(
        Delivery(edition_id=edition.id, reader_id=ann.id, plan="free", state=DeliveryState.SENT)
    )
    session.add(Click(reader_id=ann.id, edition_id=edition.id, story_id=story_ids[0], method="GET"))
    session.add(
        Click(
            reader_id=ann.id,
            edition_id=edition.id,
            story_id=story_ids[1],
            method="HEAD",
            bot=True,
            bot_reason="HEAD request",
        )
    )
    month = utcnow().strftime("%Y-%m")
    session.add(Read(reader_id=ann.id, story_id=story_ids[0], month=month))
    session.commit()

    results = staff.get("/admin/readers?q=ANN@").get_data(as_text=True)
    assert "ann@example.com" in results and "bob@example.com" not in results
    assert "No reader" in staff.get("/admin/readers?q=zzz").get_data(as_text=True)
    assert (
        "%" not in staff.get("/admin/readers?q=%25").get_data(as_text=True).split("<table")[-1][:0]
    )

    page = staff.get(f"/admin/readers/{ann.id}").get_data(as_text=True)
    assert '<dd id="reader-status">confirmed</dd>' in page
    assert '<dd id="reader-plan">free</dd>' in page
    assert "9 of 10 this month" in page
    assert edition.date.isoformat() in page and ">sent<" in page
    assert "Tracked story number" in page and "bot: HEAD request" in page and "human" in page


def test_suppress_and_unsuppress_with_an_audit_trail(app, staff, session, smtp):
    build_edition(app, session, count=1)
    bob = session.scalar(select(Reader).where(Reader.email_key == "bob@example.com"))
    bob.confirmed_at = utcnow() - timedelta(days=3)
    session.commit()
    post(staff, f"/admin/readers/{bob.id}/suppress", {"reason": "asked us by phone"})
    fresh(session)
    bob = session.get(Reader, bob.id)
    assert bob.status == ReaderStatus.BOUNCED
    assert bob.suppressed_reason == f"suppressed by {STAFF}: asked us by phone"
    page = staff.get(f"/admin/readers/{bob.id}").get_data(as_text=True)
    assert "Unsuppress" in page and "asked us by phone" in page

    post(staff, f"/admin/readers/{bob.id}/unsuppress")
    fresh(session)
    bob = session.get(Reader, bob.id)
    assert bob.status == ReaderStatus.CONFIRMED and bob.suppressed_at is None

    entries = session.scalars(select(AuditEntry).order_by(AuditEntry.id)).all()
    assert [(e.staff_email, e.action, e.target) for e in entries] == [
        (STAFF, "reader.suppress", "bob@example.com"),
        (STAFF, "reader.unsuppress", "bob@example.com"),
    ]
    assert all(e.at > utcnow() - timedelta(minutes=1) for e in entries)


def test_resend_confirmation_through_the_real_mail_path(app, staff, client, session, smtp):
    # A reader who signed up and never confirmed.
    other = app.test_client()
    other.post("/signup", data={"email": "slow@example.com", "csrf_token": csrf_token(other)})
    smtp.wait_for("slow@example.com")
    reader = session.scalar(select(Reader).where(Reader.email_key == "slow@example.com"))
    reader.confirmation_sent_at = utcnow() - timedelta(hours=2)
    session.commit()
    post(staff, f"/admin/readers/{reader.id}/resend-confirmation")
    messages = smtp.wait_for("slow@example.com", count=2)
    assert links_in(messages[-1], "/confirm/")
    # Right away again: the resend window holds, and staff are told.
    response = post(staff, f"/admin/readers/{reader.id}/resend-confirmation")
    assert "a moment ago" in staff.get(response.headers["Location"]).get_data(as_text=True)
