"""The Stripe webhook: `POST /webhooks/stripe`. Thin: verify, hand the event to
`newsletter.billing.webhooks.handle_event`, commit, answer in JSON. A handler failure
propagates to the app's error handler, which rolls back and answers 500, so Stripe
delivers the event again later.

Refused with 400 before anything is stored: a signature header that is not exactly
Stripe's format, and a signed body that is not JSON within `newsletter.jsonbody`'s
bounds or not a Stripe event the handlers can read (`stripe_objects.check_event`)."""

from __future__ import annotations

import logging

from flask import Blueprint, Flask, current_app, jsonify, request

from newsletter.billing.gateway import gateway
from newsletter.billing.webhooks import handle_event
from newsletter.db import db_session, get_db
from newsletter.jsonbody import BadJson, error_answer, request_body
from webhooks.signature import BadWebhook, verify_event

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


def init_app(app: Flask) -> None:
    from webhooks import deliverability

    app.register_blueprint(bp)
    deliverability.init_app(app)  # bounce and complaint webhooks of the sending services


@bp.post("/stripe")
def stripe_webhook():  # type: ignore[no-untyped-def]
    secrets = current_app.config["NEWSLETTER_CONFIG"].webhook_secrets
    try:
        payload = request_body(current_app.config["MAX_CONTENT_LENGTH"])
    except BadJson as exc:
        body, status = error_answer(exc)
        return jsonify(body), status
    if not secrets or not current_app.config.get("STRIPE_SECRET_KEY"):
        # 503, not 400: Stripe keeps retrying for days, so events sent before the
        # operator finishes configuring billing are not lost.
        return jsonify({"error": "billing is not configured"}), 503
    try:
        event = verify_event(payload, request.headers.get("Stripe-Signature"), secrets)
    except BadWebhook as exc:
        return jsonify({"error": str(exc)}), 400
    session = db_session()
    # The autocommit connection serves what needs no transaction (see `handle_event`).
    with get_db().autocommit() as connection:
        outcome = handle_event(session, gateway(), event, unlocked=connection)
    session.commit()
    log.info("stripe event %s %s: %s", event["id"], event["type"], outcome)
    return jsonify({"received": True, "outcome": outcome}), 200
