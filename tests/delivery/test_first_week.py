"""The first week: confirming in the evening gets the welcome email at once and the first
edition at the next local delivery hour; then one edition per local day, across a DST
change and whoever sends (the scheduled run or `--now`). Time moves with time-machine;
mail goes through the real SMTP server on loopback."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import time_machine

from newsletter.delivery.services import deliver_due, send_now
from tests.delivery.conftest import add_stories, deliveries, edition_dates
from tests.helpers import subscribe

NEW_YORK = ZoneInfo("America/New_York")
READER = "evening@example.com"


def local(*args: int) -> datetime:
    return datetime(*args, tzinfo=NEW_YORK)  # type: ignore[misc]


def editions_of(smtp) -> list[str]:  # type: ignore[no-untyped-def]
    return [m["Subject"] for m in smtp.messages_to(READER) if "/editions/" in m.as_string()]


def test_confirming_at_2155_gets_the_welcome_now_and_one_edition_each_morning(app, client, smtp):
    # Fri 30 Oct 2026, 21:55 in New York; Sun 1 Nov the clocks go back an hour.
    confirmed = local(2026, 10, 30, 21, 55)
    for n, day in enumerate((30, 31, 1, 2, 3)):
        month = 10 if day >= 30 else 11
        add_stories(app, local(2026, month, day, 5, 0).astimezone(UTC), 2, prefix=f"d{n}-")

    with time_machine.travel(confirmed, tick=False):
        client.get("/")
        subscribe(client, smtp, READER, timezone="America/New_York")
        welcome = smtp.wait_for(READER, count=2)[1]
    assert welcome["Subject"].startswith("Welcome to Both Sides Daily")
    body = welcome.get_body(("plain",)).get_content()
    assert "Saturday, October 31 at 06:00 (America/New_York)" in " ".join(body.split())
    assert "How bias and blindspots are rated".upper() in body

    # The worker runs every minute; here on the hour and at the odd minutes that matter.
    seen: dict[date, str] = {}
    when = confirmed + timedelta(minutes=1)
    end = local(2026, 11, 2, 20, 0)
    while when <= end:
        with time_machine.travel(when, tick=False), app.app_context():
            deliver_due(app)
        for row in deliveries(app):
            day = edition_dates(app)[row.edition_id]
            seen.setdefault(day, when.astimezone(NEW_YORK).strftime("%a %H:%M %Z"))
        when = (when + timedelta(hours=1)).replace(minute=0)

    assert seen == {
        date(2026, 10, 31): "Sat 06:00 EDT",
        date(2026, 11, 1): "Sun 06:00 EST",
        date(2026, 11, 2): "Mon 06:00 EST",
    }
    assert len(editions_of(smtp)) == 3

    # Staff send tomorrow's edition (by the UTC date) with --now in the reader's evening:
    # they already had today's, so they get it at their hour tomorrow, not now.
    add_stories(app, local(2026, 11, 2, 20, 0).astimezone(UTC), 2, prefix="late-")
    with time_machine.travel(local(2026, 11, 2, 21, 0), tick=False), app.app_context():
        run = send_now(app, date(2026, 11, 3))
    assert run is not None
    assert len(editions_of(smtp)) == 3
    with time_machine.travel(local(2026, 11, 3, 6, 0), tick=False), app.app_context():
        deliver_due(app)
    days = sorted(edition_dates(app)[r.edition_id] for r in deliveries(app))
    assert days == [date(2026, 10, 31), date(2026, 11, 1), date(2026, 11, 2), date(2026, 11, 3)]
    assert len(editions_of(smtp)) == 4


def test_the_confirmed_page_says_when_in_the_readers_zone(app, client, smtp):
    with time_machine.travel(local(2026, 10, 30, 21, 55), tick=False):
        client.get("/")
        from tests.conftest import csrf_token, links_in
        from tests.helpers import path_of

        client.post(
            "/signup",
            data={
                "email": READER,
                "timezone": "America/New_York",
                "csrf_token": csrf_token(client),
            },
        )
        [message] = smtp.wait_for(READER)
        page = client.get(path_of(links_in(message, "/confirm/")[0])).get_data(as_text=True)
    assert "Saturday, October 31 at 06:00 (America/New_York)" in page
