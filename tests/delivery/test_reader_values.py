"""Each reader's counts in the edition they receive: free stories left from the meter,
trial days left from their subscription's trial end."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select

from newsletter.billing.entitlement import trial_days_left
from newsletter.billing.models import BillingSubscription
from newsletter.db import utcnow
from newsletter.delivery.models import Delivery
from newsletter.stories.models import Story
from newsletter.tracking.models import Read
from tests.delivery.conftest import add_readers, add_stories, counts_in, inbox


def add_reads(app, reader_id: int, month: str, count: int) -> None:  # type: ignore[no-untyped-def]
    with app.extensions["db"].session() as session:
        story_ids = session.scalars(select(Story.id).order_by(Story.id)).all()
        assert len(story_ids) >= count
        session.add_all(
            Read(reader_id=reader_id, story_id=story_id, month=month, metered=True)
            for story_id in story_ids[:count]
        )


def start_trial(app, reader_id: int, trial_end: datetime) -> None:  # type: ignore[no-untyped-def]
    with app.extensions["db"].session() as session:
        session.add(
            BillingSubscription(
                stripe_subscription_id=f"sub_{reader_id}",
                stripe_customer_id=f"cus_{reader_id}",
                reader_id=reader_id,
                status="trialing",
                trial_start=trial_end - timedelta(days=7),
                trial_end=trial_end,
                current_period_end=trial_end,
            )
        )


def texts(smtp) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The text part of the one edition each reader received."""
    found = {}
    for email, messages in inbox(smtp).items():
        [message] = messages
        html = message.get_body(("html",)).get_content()
        text = message.get_body(("plain",)).get_content()
        found[email] = text
        assert "@@" not in html + text
    return found


class TestFreeStoriesLeft:
    def test_a_free_reader_is_told_the_free_stories_they_really_have_left(self, app, runner, smtp):
        reader, fresh = add_readers(app, 2, timezone="Pacific/Auckland")
        add_stories(app, utcnow(), count=4)
        # The meter's month is the reader's own (Auckland may be a month ahead of UTC).
        this_month = utcnow().astimezone(ZoneInfo("Pacific/Auckland")).strftime("%Y-%m")
        add_reads(app, reader.id, this_month, 3)
        add_reads(app, reader.id, "2001-01", 4)  # another month counts for nothing now

        result = runner.invoke(args=["edition", "send", "--now"])

        assert result.exit_code == 0, result.output
        assert counts_in(result.stdout)["sent"] == 2
        got = texts(smtp)
        assert "You have 7 of 10 free stories left this month" in got[reader.email]
        assert "You have 10 of 10 free stories left this month" in got[fresh.email]
        html = inbox(smtp)[reader.email][0].get_body(("html",)).get_content()
        assert "You have 7 of 10 free stories left this month" in html


class TestTrialDaysLeft:
    def test_a_trial_reader_is_told_the_days_left_of_their_own_trial(self, app, runner, smtp):
        started, middle, last_day, free = add_readers(app, 4)
        add_stories(app, utcnow())
        now = utcnow()
        start_trial(app, started.id, now + timedelta(days=7))  # started just now
        start_trial(app, middle.id, now + timedelta(days=4, hours=2))
        start_trial(app, last_day.id, now + timedelta(hours=3))

        result = runner.invoke(args=["edition", "send", "--now"])

        assert result.exit_code == 0, result.output
        with app.extensions["db"].session() as session:
            plans = dict(session.execute(select(Delivery.reader_id, Delivery.plan)).all())
        assert [plans[r.id].value for r in (started, middle, last_day, free)] == [
            "trial",
            "trial",
            "trial",
            "free",
        ]
        got = texts(smtp)
        assert "Free trial days left: 7. Every story is unlocked." in got[started.email]
        assert "Free trial days left: 5. Every story is unlocked." in got[middle.email]
        assert "Free trial days left: 1. Every story is unlocked." in got[last_day.email]
        assert "Free trial days left" not in got[free.email]
        assert "You have 10 of 10 free stories left" not in got[started.email]


def test_trial_days_left_rounds_up_to_whole_days_and_never_below_one():
    now = datetime.fromisoformat("2026-11-25T12:00:00+00:00")
    assert trial_days_left(now + timedelta(days=7), now) == 7
    assert trial_days_left(now + timedelta(days=6, hours=1), now) == 7
    assert trial_days_left(now + timedelta(days=6), now) == 6
    assert trial_days_left(now + timedelta(minutes=5), now) == 1
    assert trial_days_left(now - timedelta(hours=2), now) == 1  # the webhook is late
    assert trial_days_left(None, now) == 1
