"""Setting the delivery time on the confirmed page: a POST with the confirmation link's
token and a CSRF token; it signs no one in, and no GET changes anything."""

from __future__ import annotations

from sqlalchemy import select

from newsletter.readers.models import Reader
from tests.conftest import csrf_token, links_in
from tests.helpers import path_of


def confirm(client, smtp) -> str:  # type: ignore[no-untyped-def]
    client.post(
        "/signup",
        data={"email": "ann@example.com", "timezone": "UTC", "csrf_token": csrf_token(client)},
    )
    path = path_of(links_in(smtp.wait_for("ann@example.com")[0], "/confirm/")[0])
    page = client.get(path)
    assert page.status_code == 200
    assert f'action="{path}/delivery"' in page.get_data(as_text=True)
    return path


def test_the_confirmed_page_sets_the_delivery_time_without_signing_in(client, session, smtp):
    path = confirm(client, smtp)
    token = csrf_token(client, path)
    response = client.post(
        path + "/delivery",
        data={"delivery_hour": "7", "timezone": "Europe/Paris", "csrf_token": token},
    )
    assert response.status_code == 200
    page = response.get_data(as_text=True)
    assert "Your email arrives at 07:00 Europe/Paris" in page
    assert "at 07:00 (Europe/Paris)" in page
    reader = session.scalar(select(Reader))
    assert (reader.delivery_hour, reader.timezone) == (7, "Europe/Paris")
    assert client.get("/account").status_code in (302, 303)  # still not signed in
    assert client.get("/api/me").status_code == 401


def test_without_csrf_or_with_bad_input_nothing_changes(client, session, smtp):
    path = confirm(client, smtp)
    assert client.post(path + "/delivery", data={"delivery_hour": "7"}).status_code == 400
    token = csrf_token(client, path)
    bad = client.post(
        path + "/delivery", data={"delivery_hour": "25", "timezone": "UTC", "csrf_token": token}
    )
    assert bad.status_code == 400
    assert "hour" in bad.get_data(as_text=True).lower()
    forged = client.post(
        "/confirm/not-a-token/delivery",
        data={"delivery_hour": "7", "timezone": "UTC", "csrf_token": token},
    )
    assert forged.status_code == 400
    reader = session.scalar(select(Reader))
    assert reader.delivery_hour == 6


def test_a_get_of_the_form_url_changes_nothing(client, session, smtp):
    path = confirm(client, smtp)
    assert client.get(path + "/delivery").status_code == 405
    assert session.scalar(select(Reader.delivery_hour)) == 6
