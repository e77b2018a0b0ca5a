"""Sending an email from a template, after the transaction that caused it commits.

Services call `send_email(session, ...)`; nothing leaves the building unless the boundary
commits, so a rolled-back signup never mails anyone.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

from newsletter.mail.message import ListHeaders, build_message, envelope_sender
from newsletter.mail.render import render_email
from newsletter.mail.transports import DeliveryError, Transport, send_message, transport_from_url

log = logging.getLogger(__name__)
_PENDING = "newsletter.pending_mail"


def open_transport(app: Flask | None = None) -> Transport:
    cfg = (app or current_app).config
    return transport_from_url(
        cfg["MAIL_URL"], outbox_dir=cfg["OUTBOX_PATH"], timeout=cfg["SMTP_TIMEOUT"]
    )


def common_context(app: Flask) -> dict[str, Any]:
    cfg = app.config
    return {
        "base_url": cfg["BASE_URL"],
        "postal_address": cfg["POSTAL_ADDRESS"],
        "product_name": "Both Sides Daily",
        "unsubscribe_url": None,
    }


def deliver_now(
    app: Flask,
    name: str,
    to: str,
    context: dict[str, Any],
    *,
    unsubscribe_url: str | None = None,
) -> None:
    """Render and send one email right away. Raises `DeliveryError` on refusal."""
    ctx = {**common_context(app), **context, "unsubscribe_url": unsubscribe_url}
    rendered = render_email(name, ctx)
    cfg = app.config
    message = build_message(
        mail_from=cfg["MAIL_FROM"],
        to=to,
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        list_headers=ListHeaders(cfg["LIST_ID"], unsubscribe_url) if unsubscribe_url else None,
    )
    transport = open_transport(app)
    try:
        send_message(transport, envelope_sender(cfg["MAIL_FROM"]), message)
    finally:
        transport.close()


def send_email(
    session: Session,
    name: str,
    to: str,
    context: dict[str, Any],
    *,
    unsubscribe_url: str | None = None,
) -> None:
    """Queue an email on the session; it is sent once the session commits."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def job() -> None:
        deliver_now(app, name, to, context, unsubscribe_url=unsubscribe_url)

    session.info.setdefault(_PENDING, []).append(job)


def _flush_pending(session: Session) -> None:
    jobs: list[Callable[[], None]] = session.info.pop(_PENDING, [])
    for job in jobs:
        try:
            job()
        except DeliveryError:
            # The action itself succeeded; a refused email is logged, not turned into
            # a failed request. The reader can ask again once the resend window passes.
            log.exception("email could not be delivered")


def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def install(session_factory: Any) -> None:
    event.listen(session_factory, "after_commit", _flush_pending)
    event.listen(session_factory, "after_soft_rollback", lambda s, _t: _drop_pending(s))
