"""Sending mail: `send_bytes` is the one way a composed message leaves (the send loop,
transactional email, staff test sends); `send_email` sends one from a template after the
transaction that caused it commits.

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

from newsletter import metrics
from newsletter.deliverability.dkim import DkimSigner
from newsletter.deliverability.verp import return_path
from newsletter.mail.message import compose, envelope_sender, now_header
from newsletter.mail.render import render_email
from newsletter.mail.transports import DeliveryError, Transport, transport_from_url
from newsletter.tokens import new_message_id

log = logging.getLogger(__name__)
_PENDING = "newsletter.pending_mail"


def open_transport(app: Flask | None = None) -> Transport:
    cfg = (app or current_app).config
    return transport_from_url(
        cfg["MAIL_URL"], outbox_dir=cfg["OUTBOX_PATH"], timeout=cfg["SMTP_TIMEOUT"]
    )


def send_bytes(
    app: Flask,
    to: str,
    data: bytes,
    *,
    transport: Transport | None = None,
    delivery_id: int | None = None,
) -> None:
    """Send one composed message to `to`: over `transport` when given (a connection the
    caller reuses), else over one opened for this message. The envelope sender is the
    delivery's VERP address with BOUNCE_ADDRESS set (else MAIL_FROM's address), and the
    message is DKIM-signed when keys are configured. Raises `DeliveryError` when the
    server refuses."""
    cfg = app.config
    bounce_address = cfg["BOUNCE_ADDRESS"]
    if bounce_address:
        envelope_from = return_path(bounce_address, cfg["SECRET_KEY"], delivery_id)
    else:
        envelope_from = envelope_sender(cfg["MAIL_FROM"])
    signer: DkimSigner | None = app.extensions.get("dkim")
    if signer is not None:
        data = signer.sign(data)
    own = transport is None
    try:
        if transport is None:
            transport = open_transport(app)
        transport.send_bytes(envelope_from, to, data)
    except DeliveryError as exc:
        metrics.SMTP_REPLIES.labels(metrics.reply_class(exc.code)).inc()
        raise
    finally:
        if own and transport is not None:
            transport.close()
    metrics.SMTP_REPLIES.labels("2xx").inc()


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
    template = compose(
        mail_from=cfg["MAIL_FROM"],
        subject=rendered.subject,
        text=rendered.text,
        html=rendered.html,
        list_id=cfg["LIST_ID"] if unsubscribe_url else None,
    )
    values = {"to": to, "date": now_header(), "message_id": new_message_id(cfg["MAIL_FROM"])}
    if unsubscribe_url:
        values["unsubscribe_url"] = unsubscribe_url
    send_bytes(app, to, template.render(values))


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
