"""Edition control: list with live progress, preview per variant, reorder and drop before
sending, test send, pause and resume a send in progress."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from newsletter.billing.entitlement import Plan
from newsletter.billing.models import BillingSubscription
from newsletter.db import utcnow
from newsletter.delivery.ledger import enqueue_now
from newsletter.delivery.models import Delivery, DeliveryState
from newsletter.delivery.sender import send_queued
from newsletter.editions.models import Edition, EditionStory, EditionVariant
from newsletter.readers.models import Reader
from newsletter.tracking.models import Read
from tests.admin.conftest import STAFF, build_edition, fresh, post


def story_order(session, edition_id: int) -> list[str]:  # type: ignore[no-untyped-def]
    fresh(session)
    return [
        es.story.title
        for es in session.scalars(
            select(EditionStory)
            .where(EditionStory.edition_id == edition_id)
            .order_by(EditionStory.position)
        )
    ]


def html_of(session, edition_id: int, plan: Plan = Plan.PAID) -> str:  # type: ignore[no-untyped-def]
    fresh(session)
    return session.scalar(
        select(EditionVariant.html).where(
            EditionVariant.edition_id == edition_id, EditionVariant.plan == plan
        )
    )


def test_reorder_and_drop_before_sending_rerender_every_variant(app, staff, session, smtp):
    edition = build_edition(app, session, count=4)
    before = story_order(session, edition.id)
    assert len(before) == 4
    first, second = before[0], before[1]
    page = staff.get(f"/admin/editions/{edition.id}").get_data(as_text=True)
    assert "Move down: " + first in page and "Free readers" in page

    story_ids = [es.story_id for es in session.get(Edition, edition.id).stories]
    post(
        staff, f"/admin/editions/{edition.id}/stories", {"story_id": story_ids[0], "action": "down"}
    )
    assert story_order(session, edition.id)[:2] == [second, first]
    for plan in Plan:
        html = html_of(session, edition.id, plan)
        assert html.index(second) < html.index(first)
    # The subject follows the new order.
    fresh(session)
    assert session.get(Edition, edition.id).subject.startswith(second)

    post(
        staff, f"/admin/editions/{edition.id}/stories", {"story_id": story_ids[3], "action": "drop"}
    )
    assert len(story_order(session, edition.id)) == 3
    assert before[3] not in html_of(session, edition.id)
    assert html_of(session, edition.id).count("Read both sides") == 3

    # Variant previews, with stand-ins for each reader's links and counts.
    preview = staff.get(f"/admin/editions/{edition.id}/variants/free/preview")
    assert "sandbox" in preview.headers["Content-Security-Policy"]
    body = preview.get_data(as_text=True)
    assert "@@" not in body and "/stories/" in body and "free stories left" in body
    text = staff.get(f"/admin/editions/{edition.id}/variants/trial/preview?view=text")
    assert "days left" in text.get_data(as_text=True)

    # A test of the free variant, to the staff member, exactly as a reader gets it.
    post(staff, f"/admin/editions/{edition.id}/test", {"plan": "free"})
    [message] = smtp.wait_for(STAFF)
    assert message["List-Unsubscribe"]
    assert "free stories left" in message.get_body(("html",)).get_content()

    # Once sending starts, the stories are fixed.
    fresh(session)  # a write transaction of its own (SQLite)
    with app.app_context():
        enqueue_now(session, session.get(Edition, edition.id))
        session.commit()
    response = post(
        staff, f"/admin/editions/{edition.id}/stories", {"story_id": story_ids[1], "action": "drop"}
    )
    assert "can no longer change" in staff.get(response.headers["Location"]).get_data(as_text=True)
    assert len(story_order(session, edition.id)) == 3

    from newsletter.admin.models import AuditEntry

    assert [e.action for e in session.scalars(select(AuditEntry).order_by(AuditEntry.id))] == [
        "edition.story_down",
        "edition.story_drop",
        "edition.test_send",
    ]


def test_pause_and_resume_a_send_with_live_progress(app, staff, session, smtp):
    edition = build_edition(app, session, count=2)
    with app.app_context():
        queued = enqueue_now(session, session.get(Edition, edition.id))
        session.commit()
    assert queued == 3  # ann, bob and the staff member
    progress = staff.get(f"/admin/editions/progress?ids={edition.id}").get_json()
    assert progress[str(edition.id)] == {
        "edition_id": edition.id,
        "status": "sending",
        "paused": False,
        "queued": 3,
        "sending": 0,
        "sent": 0,
        "failed": 0,
        "suppressed": 0,
        "total": 3,
        "done": 0,
    }
    post(staff, f"/admin/editions/{edition.id}/pause")
    # A paused edition: a sender claims nothing and does not wait for it.
    report = send_queued(app, edition.id)
    assert report.sent == 0 and smtp.received == []
    page = staff.get(f"/admin/editions/{edition.id}").get_data(as_text=True)
    assert "Resume sending" in page and "(paused)" in page
    assert staff.get(f"/admin/editions/progress?ids={edition.id}").get_json()[str(edition.id)][
        "paused"
    ]

    post(staff, f"/admin/editions/{edition.id}/resume")
    report = send_queued(app, edition.id)
    assert report.sent == 3
    done = staff.get(f"/admin/editions/progress?ids={edition.id}").get_json()[str(edition.id)]
    assert (done["status"], done["sent"], done["queued"], done["paused"]) == ("sent", 3, 0, False)
    fresh(session)
    states = session.scalars(select(Delivery.state).where(Delivery.edition_id == edition.id))
    assert set(states) == {DeliveryState.SENT}
    listing = staff.get("/admin/editions").get_data(as_text=True)
    assert f'data-progress="{edition.id}"' in listing and 'data-count="sent">3<' in listing
    # Pausing an edition that is not being sent is refused.
    response = post(staff, f"/admin/editions/{edition.id}/pause")
    assert "Only an edition that is being sent" in staff.get(response.headers["Location"]).get_data(
        as_text=True
    )


def test_a_test_send_carries_the_staff_members_own_counts(app, staff, session, smtp):
    """The test send fills the holes as the send loop does (one shared function): the
    staff member's own free stories left, and their own trial's days left."""
    edition = build_edition(app, session, count=3)
    me = session.scalar(select(Reader).where(Reader.email_key == STAFF))
    month = utcnow().astimezone(ZoneInfo(me.timezone)).strftime("%Y-%m")
    for es in session.get(Edition, edition.id).stories[:2]:
        session.add(Read(reader_id=me.id, story_id=es.story_id, month=month, metered=True))
    session.commit()

    post(staff, f"/admin/editions/{edition.id}/test", {"plan": "free"})
    [message] = smtp.wait_for(STAFF)
    assert (
        "You have 8 of 10 free stories left this month"
        in message.get_body(("plain",)).get_content()
    )

    session.add(
        BillingSubscription(
            stripe_subscription_id="sub_staff",
            stripe_customer_id="cus_staff",
            reader_id=me.id,
            status="trialing",
            trial_end=utcnow() + timedelta(days=3, hours=1),
        )
    )
    session.commit()
    post(staff, f"/admin/editions/{edition.id}/test", {"plan": "trial"})
    message = smtp.wait_for(STAFF, count=2)[-1]
    assert "Free trial days left: 4." in message.get_body(("plain",)).get_content()
