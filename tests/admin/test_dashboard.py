"""The dashboard's numbers are counts of the rows they describe: make the rows, read the
numbers off the page (the charts carry them as text and `data-value`)."""

from __future__ import annotations

import re
from datetime import timedelta

from newsletter.db import utcnow
from newsletter.delivery.models import Delivery, DeliveryState
from newsletter.editions.models import EditionStatus
from newsletter.readers.models import Reader, ReaderStatus
from newsletter.tracking.models import Click, Event, EventKind
from tests.admin.conftest import build_edition


def section(page: str, section_id: str) -> str:
    start = page.index(f'id="{section_id}"')
    return page[start : page.index("</section>", start)]


def values(svg: str, series: str) -> list[int]:
    return [int(v) for v in re.findall(rf'data-series="{series}"[^>]*?data-value="(\d+)"', svg)]


def test_the_numbers_match_the_rows(app, staff, session):
    now = utcnow()
    edition = build_edition(app, session, count=3)  # ann and bob, confirmed
    ann, bob = (
        session.query(Reader).filter_by(email_key=e).one()
        for e in ("ann@example.com", "bob@example.com")
    )
    story_ids = [es.story_id for es in edition.stories]
    day = timedelta(days=1)
    # Readers over time: ann joined 10 days ago, started a trial 3 days ago and paid today;
    # bob joined 5 days ago; carl joined 20 days ago and unsubscribed 2 days ago;
    # dora bounced; eve never confirmed.
    ann.confirmed_at, bob.confirmed_at = now - 10 * day, now - 5 * day
    session.add_all(
        [
            Reader(
                email="carl@example.com",
                email_key="carl@example.com",
                status=ReaderStatus.UNSUBSCRIBED,
                confirmed_at=now - 20 * day,
                unsubscribed_at=now - 2 * day,
            ),
            Reader(
                email="dora@example.com",
                email_key="dora@example.com",
                status=ReaderStatus.BOUNCED,
                confirmed_at=now - 20 * day,
                suppressed_at=now - 1 * day,
                suppressed_reason="550 no such user",
            ),
            Reader(email="eve@example.com", email_key="eve@example.com"),
            Event(kind=EventKind.TRIAL_STARTED, reader_id=ann.id, at=now - 3 * day),
            Event(kind=EventKind.PAID, reader_id=ann.id, at=now - timedelta(seconds=1)),
        ]
    )
    # The funnel: 5 paywall impressions by 2 readers, 1 trial, 1 paid (above), and one
    # impression too old to count.
    for who, n in ((ann, 3), (bob, 2)):
        for _ in range(n):
            session.add(
                Event(
                    kind=EventKind.PAYWALL_IMPRESSION,
                    reader_id=who.id,
                    story_id=story_ids[0],
                    at=now - 4 * day,
                )
            )
    session.add(Event(kind=EventKind.PAYWALL_IMPRESSION, reader_id=bob.id, at=now - 40 * day))
    # Deliveries: sent to ann, failed for bob, bounced for dora, eve left before her turn.
    session.flush()
    dora = session.query(Reader).filter_by(email_key="dora@example.com").one()
    eve = session.query(Reader).filter_by(email_key="eve@example.com").one()
    edition.status = EditionStatus.SENT
    session.add_all(
        [
            Delivery(
                edition_id=edition.id, reader_id=ann.id, plan="free", state=DeliveryState.SENT
            ),
            Delivery(
                edition_id=edition.id,
                reader_id=bob.id,
                plan="free",
                state=DeliveryState.FAILED,
                last_reply="421 try later",
            ),
            Delivery(
                edition_id=edition.id,
                reader_id=dora.id,
                plan="free",
                state=DeliveryState.SUPPRESSED,
                last_reply="550 5.1.1 no such user",
            ),
            Delivery(
                edition_id=edition.id,
                reader_id=eve.id,
                plan="free",
                state=DeliveryState.SUPPRESSED,
                last_reply="unsubscribed before sending",
            ),
        ]
    )
    # Clicks: story 0 has 2 human and 3 bot clicks, story 1 one human; an old one is out.
    clicks = [(0, False)] * 2 + [(0, True)] * 3 + [(1, False)]
    for index, bot in clicks:
        session.add(
            Click(
                reader_id=ann.id,
                edition_id=edition.id,
                story_id=story_ids[index],
                method="GET",
                bot=bot,
                at=now - day,
            )
        )
    session.add(
        Click(
            reader_id=ann.id,
            edition_id=edition.id,
            story_id=story_ids[2],
            method="GET",
            at=now - 45 * day,
        )
    )
    session.commit()

    page = staff.get("/admin/").get_data(as_text=True)
    assert '<dd id="kpi-readers">6</dd>' in page  # staff, ann, bob, carl, dora, eve
    assert '<dd id="kpi-confirmed">3</dd>' in page  # staff, ann, bob
    assert '<dd id="kpi-bounced">1</dd>' in page
    assert '<dd id="kpi-editions">1</dd>' in page

    plans = section(page, "chart-plans")
    free, trial, paid = values(plans, "free"), values(plans, "trial"), values(plans, "paid")
    assert len(free) == 30
    # Today: staff and bob free, ann paid; carl unsubscribed, dora suppressed.
    assert (free[-1], trial[-1], paid[-1]) == (2, 0, 1)
    # End of yesterday: ann on trial, staff (confirmed a month ago) and bob free (carl had
    # left; dora was suppressed a day ago).
    assert (free[-2], trial[-2], paid[-2]) == (2, 1, 0)
    # 15 days ago: staff, carl and dora.
    assert (free[-16], trial[-16], paid[-16]) == (3, 0, 0)
    assert 'data-plan="paid">1<' in plans

    sent = section(page, "chart-sent")
    assert values(sent, "sent") == [1]
    failures = section(page, "chart-failures")
    assert values(failures, "failed") == [1] and values(failures, "bounced") == [1]
    row = re.search(rf'<tr data-edition="{edition.id}">(.*?)</tr>', failures).group(1)
    assert re.findall(r"<td>(\d+)</td>", row) == ["1", "1", "1", "1", "0"]

    clicks_svg = section(page, "chart-clicks")
    assert values(clicks_svg, "human") == [2, 1] and values(clicks_svg, "bot") == [3, 0]
    assert "2 human · 3 bot" in clicks_svg

    funnel = section(page, "chart-funnel")
    assert re.findall(r'class="s-funnel"[^>]*data-value="(\d+)"', funnel) == ["5", "1", "1"]
    assert "20.0% of the step before" in funnel and "100.0% of the step before" in funnel
    assert '<span id="funnel-readers">2 readers</span>' in funnel
