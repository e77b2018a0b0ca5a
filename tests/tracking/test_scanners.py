"""Mail security scanners open every link in an email: the meter must not move."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from newsletter.tracking.models import Click
from tests.tracking.conftest import clicks_written, reads_count

SCANNERS = {
    "Microsoft Defender Safe Links": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36 Edg/120.0.0.0 SafeLinks",
    "Microsoft Office preview": "Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17231; Pro)",
    "Proofpoint URL Defense": "Mozilla/5.0 (compatible; Proofpoint URL Defense)",
    "Mimecast": "Mozilla/5.0 (compatible; Mimecast-Url-Protect/1.0)",
    "Barracuda": "Barracuda Sentinel (EE)",
    "python-requests": "python-requests/2.32.3",
    "curl": "curl/8.5.0",
    "Go": "Go-http-client/1.1",
    "Java": "Java/17.0.2",
    # Some gateways pose as an ordinary browser: they still never run the page's script.
    "browser disguise": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0 Safari/537.36",
}


@pytest.mark.parametrize("name", sorted(SCANNERS))
def test_scanner_following_every_link_moves_no_meter(app, sent_edition, session, name):
    ua = SCANNERS[name]
    scanner = app.test_client()  # keeps cookies across requests, like a scanning browser
    for links in sent_edition.links.values():
        for link in links:
            scanner.head(link, headers={"User-Agent": ua}, follow_redirects=True)
            page = scanner.get(link, headers={"User-Agent": ua}, follow_redirects=True)
            assert page.status_code == 200
    clicks_written(app)
    assert reads_count(session) == 0
    # The clicks are logged all the same, for the dashboard.
    total = session.scalar(select(func.count()).select_from(Click))
    assert total == 2 * sum(len(v) for v in sent_edition.links.values())


def test_scanners_are_marked_as_bots_in_the_click_log(app, sent_edition, session):
    for name, ua in SCANNERS.items():
        if name == "browser disguise":
            continue
        app.test_client().get(sent_edition.links["ann@example.com"][0], headers={"User-Agent": ua})
    clicks_written(app)
    session.rollback()
    verdicts = session.scalars(select(Click.bot)).all()
    assert verdicts and all(verdicts)


def test_a_scanner_replaying_a_view_token_is_not_counted(app, sent_edition, session):
    import re

    browser = app.test_client()
    redirect = browser.get(sent_edition.links["ann@example.com"][0])
    page = browser.get(redirect.headers["Location"]).get_data(as_text=True)
    token = re.search(r'data-view-token="([^"]+)"', page).group(1)
    slug = redirect.headers["Location"].rsplit("/", 1)[1]
    response = browser.post(
        f"/stories/{slug}/read",
        json={"token": token},
        headers={"User-Agent": SCANNERS["Proofpoint URL Defense"]},
    )
    assert response.status_code == 403
    assert reads_count(session) == 0
