"""The Stripe webhook: `POST /webhooks/stripe`. Thin: verify, hand to newsletter.billing,
commit. A handler failure propagates to the app's error handler, which rolls back and
answers 500, so Stripe delivers the event again later."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, request

from newsletter.billing.events import process_event, settle_from_store
from newsletter.billing.gateway import gateway
from newsletter.db import db_session, get_db
from webhooks.signature import BadWebhook, verify_event

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


@bp.post("/stripe")
def stripe_webhook():  # type: ignore[no-untyped-def]
    secrets = current_app.config["NEWSLETTER_CONFIG"].webhook_secrets
    if not secrets or not current_app.config.get("STRIPE_SECRET_KEY"):
        # 503, not 400: Stripe keeps retrying for days, so events sent before the
        # operator finishes configuring billing are not lost.
        return jsonify(error="billing is not configured"), 503
    try:
        event = verify_event(
            request.get_data(cache=False), request.headers.get("Stripe-Signature"), secrets
        )
    except BadWebhook as exc:
        return jsonify(error=str(exc)), 400
    with get_db().autocommit() as connection:
        outcome = settle_from_store(connection, event)
    if outcome is None:
        session = db_session()
        outcome = process_event(session, gateway(), event)
        session.commit()
    log.info("stripe event %s %s: %s", event["id"], event["type"], outcome)
    return jsonify(received=True, outcome=outcome)
