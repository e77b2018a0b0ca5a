"""Only signed-in staff see /admin: everyone else gets 404 on every route and method,
and every form there needs its CSRF token."""

from __future__ import annotations

import re

import pytest

from tests.admin.conftest import STAFF, build_edition, fresh, post
from tests.helpers import subscribed_and_signed_in

SKIP = {"HEAD", "OPTIONS"}


def admin_requests(app, ids):  # type: ignore[no-untyped-def]
    """(method, path) for every /admin rule, its arguments filled with real ids."""
    values = {
        "name": "edition",
        "number": 1,
        "plan": "free",
        "edition_id": ids["edition"],
        "reader_id": ids["reader"],
        "story_id": ids["story"],
        "feed_id": ids["feed"],
        "outlet_id": ids["outlet"],
    }
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin"):
            continue
        path = rule.rule
        for arg in rule.arguments:
            path = re.sub(rf"<(?:[a-z]+:)?{arg}>", str(values[arg]), path)
        for method in sorted(rule.methods - SKIP):
            out.append((method, path))
    return out


@pytest.fixture
def ids(app, session):  # type: ignore[no-untyped-def]
    from newsletter.feeds.models import Feed
    from newsletter.readers.models import Reader
    from newsletter.stories.models import Outlet

    edition = build_edition(app, session, count=2)
    ann = session.query(Reader).filter_by(email_key="ann@example.com").one()
    outlet = session.query(Outlet).order_by(Outlet.id).first()
    feed = Feed(outlet_id=outlet.id, url="https://feeds.example/rss")
    session.add(feed)
    session.commit()
    return {
        "edition": edition.id,
        "reader": ann.id,
        "story": edition.stories[0].story_id,
        "feed": feed.id,
        "outlet": outlet.id,
    }


def test_anyone_but_staff_gets_404_everywhere_under_admin(app, client, smtp, ids):
    found = admin_requests(app, ids)
    assert len(found) >= 25  # every route is walked
    assert ("GET", "/admin/") in found
    assert ("POST", f"/admin/readers/{ids['reader']}/suppress") in found
    for method, path in found:
        response = client.open(path, method=method)
        assert response.status_code == 404, (method, path, response.status_code)
    assert client.get("/admin/no-such-page").status_code == 404
    assert "Admin" not in client.get("/").get_data(as_text=True)

    # A reader who is not staff, signed in for real through the emailed link.
    subscribed_and_signed_in(client, smtp, "reader@example.com")
    assert client.get("/account").status_code == 200  # signed in
    for method, path in admin_requests(app, ids):
        response = client.open(path, method=method, data={"csrf_token": "x"})
        assert response.status_code == 404, (method, path, response.status_code)
    # Even with a valid CSRF token from a page they can see.
    response = client.post(
        f"/admin/readers/{ids['reader']}/suppress", data={"csrf_token": _page_token(client)}
    )
    assert response.status_code == 404


def _page_token(client):  # type: ignore[no-untyped-def]
    page = client.get("/account").get_data(as_text=True)
    return re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)


def test_staff_see_every_page_and_every_form_needs_its_csrf_token(app, staff, ids, session):
    for method, path in admin_requests(app, ids):
        if method == "GET":
            response = staff.get(path)
            assert response.status_code == 200, (path, response.status_code)
    assert "Admin" in staff.get("/account").get_data(as_text=True)
    # Every email there is (and the layout) can be opened, previewed and compared.
    from newsletter.mail.templates.store import editable_names

    for name in editable_names():
        assert staff.get(f"/admin/templates/{name}").status_code == 200, name
        preview = staff.get(f"/admin/templates/{name}/versions/1/preview")
        assert preview.status_code == 200 and "<html" in preview.get_data(as_text=True), name
        assert "sandbox" in preview.headers["Content-Security-Policy"]
    # What does not exist is a 404 page for staff too.
    for path in ("/admin/templates/nope", "/admin/editions/99999", "/admin/readers/99999"):
        response = staff.get(path)
        assert response.status_code == 404 and "No such" in response.get_data(as_text=True)

    for method, path in admin_requests(app, ids):
        if method != "POST":
            continue
        response = staff.post(path, data={"reason": "x", "action": "drop", "story_id": 1})
        assert response.status_code == 400, (path, response.status_code)
        assert "This form has expired" in response.get_data(as_text=True)
    # Nothing happened: no audit entry, the reader is not suppressed.
    from newsletter.admin.models import AuditEntry
    from newsletter.readers.models import Reader, ReaderStatus

    fresh(session)
    assert session.query(AuditEntry).count() == 0
    assert session.get(Reader, ids["reader"]).status == ReaderStatus.CONFIRMED
    # With the token, the same form works.
    response = post(staff, f"/admin/readers/{ids['reader']}/suppress", {"reason": "by phone"})
    assert response.status_code == 303

    # Staff no more: no access, at once.
    fresh(session)
    session.query(Reader).filter_by(email_key=STAFF).one().is_staff = False
    session.commit()
    assert staff.get("/admin/").status_code == 404
