"""Flows that many tests need, driven through the real HTTP routes and SMTP server."""

from __future__ import annotations

from flask.testing import FlaskClient

from tests.conftest import csrf_token, links_in
from tests.smtp_server import SmtpServer


def path_of(link: str) -> str:
    return "/" + link.split("://", 1)[1].split("/", 1)[1]


def subscribe(client: FlaskClient, smtp: SmtpServer, email: str, timezone: str = "UTC") -> None:
    """Sign up and confirm through the emails, as a reader would."""
    before = len(smtp.messages_to(email))
    client.post(
        "/signup", data={"email": email, "timezone": timezone, "csrf_token": csrf_token(client)}
    )
    message = smtp.wait_for(email, count=before + 1)[-1]
    response = client.get(path_of(links_in(message, "/confirm/")[0]))
    assert response.status_code == 200
    smtp.wait_for(email, count=before + 2)  # the welcome email, sent on confirming


def request_signin_link(client: FlaskClient, smtp: SmtpServer, email: str) -> str:
    before = len(smtp.messages_to(email))
    token = csrf_token(client, "/signin")
    client.post("/signin", data={"email": email, "csrf_token": token})
    message = smtp.wait_for(email, count=before + 1)[-1]
    return path_of(links_in(message, "/signin/")[0])


def sign_in(client: FlaskClient, smtp: SmtpServer, email: str) -> None:
    path = request_signin_link(client, smtp, email)
    token = csrf_token(client, path)
    response = client.post(path, data={"csrf_token": token})
    assert response.status_code == 303, response.get_data(as_text=True)


def subscribed_and_signed_in(
    client: FlaskClient, smtp: SmtpServer, email: str, timezone: str = "UTC"
) -> None:
    subscribe(client, smtp, email, timezone)
    sign_in(client, smtp, email)
