"""Suppressed addresses (bounced, complained, suppressed by staff) get no email at all,
and nobody can tell from the web answer; staff can lift a suppression."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from flask import Flask
from sqlalchemy import select, update

from newsletter.admin.models import AuditEntry
from newsletter.db import utcnow
from newsletter.readers.models import Reader, ReaderStatus, Suppression
from newsletter.readers.suppression import record_bounce, record_complaint
from tests.admin.conftest import STAFF, post, signed_in_as
from tests.conftest import csrf_token
from tests.helpers import subscribe
from tests.smtp_server import SmtpServer

ANN = "ann@example.com"
REASONS = ["bounced", "bounced-by-the-send-loop", "complained", "staff"]


def reader_id(app: Flask, email: str) -> int:
    with app.extensions["db"].session() as session:
        return session.scalar(select(Reader.id).where(Reader.email_key == email))


def suppress(app: Flask, email: str, how: str) -> None:
    """Suppress `email` the way each source does."""
    if how == "staff":
        staff = app.test_client()
        signed_in_as(staff, app, STAFF, staff=True)
        response = post(staff, f"/admin/readers/{reader_id(app, email)}/suppress", {"reason": "x"})
        assert response.status_code == 303
        return
    with app.app_context(), app.extensions["db"].session() as session:
        reader = session.scalar(select(Reader).where(Reader.email_key == email))
        if how == "bounced":  # as the provider's bounce webhook will
            record_bounce(session, reader, "550 5.1.1 no such user")
        elif how == "complained":  # as the provider's complaint webhook will
            record_complaint(session, reader, "feedback loop report")
        else:  # the send loop's own statement after a 550: status only
            session.execute(update(Reader).where(Reader.id == reader.id).values(status="bounced"))


def signup(client, email: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/signup", data={"email": email, "timezone": "UTC", "csrf_token": csrf_token(client)}
    )


def signin(client, email: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/signin", data={"email": email, "csrf_token": csrf_token(client, "/signin")}
    )


def neutral(response, email: str) -> str:  # type: ignore[no-untyped-def]
    text = response.get_data(as_text=True).replace(email, "X")
    return re.sub(r'name="csrf_token" value="[^"]+"', "", text)


def later(minutes: int):  # type: ignore[no-untyped-def]
    """Past every resend window, so that only the suppression can stop an email."""
    return time_machine.travel(utcnow() + timedelta(minutes=minutes))


@pytest.mark.parametrize("how", REASONS)
def test_a_suppressed_confirmed_reader_gets_no_email_and_the_same_answer(
    app, client, smtp: SmtpServer, how
):
    subscribe(client, smtp, ANN)
    suppress(app, ANN, how)
    before = len(smtp.messages_to(ANN))

    with later(10):
        signup_known, signup_unknown = signup(client, ANN), signup(client, "nobody@example.com")
    with later(20):
        signin_known, signin_unknown = signin(client, ANN), signin(client, "nobody2@example.com")

    assert signup_known.status_code == signup_unknown.status_code == 200
    assert neutral(signup_known, ANN) == neutral(signup_unknown, "nobody@example.com")
    assert signin_known.status_code == signin_unknown.status_code == 200
    assert neutral(signin_known, ANN) == neutral(signin_unknown, "nobody2@example.com")
    # The mail path works (the new address got its confirmation); the suppressed did not.
    smtp.wait_for("nobody@example.com")
    assert len(smtp.messages_to(ANN)) == before


@pytest.mark.parametrize("how", REASONS)
def test_a_suppressed_pending_reader_gets_no_confirmation_by_any_way(
    app, client, smtp: SmtpServer, how
):
    signup(client, ANN)
    smtp.wait_for(ANN)
    suppress(app, ANN, how)

    with later(10):
        signup(client, ANN)
    with later(20):
        signin(client, ANN)
    with later(30):
        staff = app.test_client()
        signed_in_as(staff, app, "care@example.com", staff=True)
        response = post(staff, f"/admin/readers/{reader_id(app, ANN)}/resend-confirmation")
        page = staff.get(response.headers["Location"]).get_data(as_text=True)
        assert "This address is suppressed" in page
    signup(client, "control@example.com")
    smtp.wait_for("control@example.com")
    assert len(smtp.messages_to(ANN)) == 1  # the first confirmation only


@pytest.mark.parametrize("how", REASONS)
def test_staff_lift_the_suppression_and_email_flows_again(app, client, smtp, session, how):
    subscribe(client, smtp, ANN)
    suppress(app, ANN, how)
    staff = app.test_client()
    signed_in_as(staff, app, "care@example.com", staff=True)
    target = reader_id(app, ANN)
    page = staff.get(f"/admin/readers/{target}").get_data(as_text=True)
    assert "Unsuppress" in page

    response = post(staff, f"/admin/readers/{target}/unsuppress")

    assert response.status_code == 303
    assert "Suppression lifted" in staff.get(response.headers["Location"]).get_data(as_text=True)
    reader = session.get(Reader, target)
    assert reader.suppression is None and reader.suppressed_at is None
    expected = ReaderStatus.UNSUBSCRIBED if how == "complained" else ReaderStatus.CONFIRMED
    assert reader.status == expected
    actions = session.scalars(select(AuditEntry.action).order_by(AuditEntry.id)).all()
    assert actions[-1] == "reader.unsuppress"
    before = len(smtp.messages_to(ANN))
    with later(10):
        signin(client, ANN)
    assert len(smtp.wait_for(ANN, count=before + 1)) == before + 1


def test_a_complaint_unsubscribes_and_is_recorded_once(app, client, smtp, session):
    subscribe(client, smtp, ANN)
    suppress(app, ANN, "complained")
    suppress(app, ANN, "complained")  # a redelivered notification changes nothing
    reader = session.scalar(select(Reader).where(Reader.email_key == ANN))
    assert reader.status == ReaderStatus.UNSUBSCRIBED
    assert reader.suppression == Suppression.COMPLAINED
    assert reader.suppressed_reason == "complaint: feedback loop report"
    assert [c.kind.value for c in reader.consents].count("unsubscribe") == 1


def test_a_suppressed_reader_cannot_confirm_or_resubscribe(app, client, smtp, session):
    signup(client, ANN)
    [message] = smtp.wait_for(ANN)
    suppress(app, ANN, "complained")
    from tests.conftest import links_in
    from tests.helpers import path_of

    response = client.get(path_of(links_in(message, "/confirm/")[0]))
    assert response.status_code == 400
    assert session.scalar(select(Reader.status)) == ReaderStatus.UNSUBSCRIBED
