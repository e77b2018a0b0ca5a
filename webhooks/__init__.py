"""The Stripe webhook: `POST /webhooks/stripe`. Thin: verify, hand to newsletter.billing,
commit. A handler failure propagates (the app's error handler, or `lean`'s), which rolls
back and answers 500, so Stripe delivers the event again later.

Answered before Flask (`newsletter.lean`): Stripe sends events in bursts. The Flask view
answers what the lean route does not read (no `Content-Length`, a body over the app's
`MAX_CONTENT_LENGTH`), with the same function.

Refused with 400 before anything is stored: a signature header that is not exactly
Stripe's format, and a signed body that is not JSON within `newsletter.jsonbody`'s
bounds or not a Stripe event the handlers can read (`billing.events.check_event`)."""

from __future__ import annotations

import logging
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request

from newsletter.billing.events import process_event, settle_from_store, sync_unlocked
from newsletter.billing.gateway import gateway
from newsletter.db import db_session, get_db
from newsletter.jsonbody import BadJson, error_answer, request_body
from newsletter.lean import LeanRequest
from webhooks.signature import BadWebhook, verify_event

log = logging.getLogger(__name__)

bp = Blueprint("webhooks", __name__, url_prefix="/webhooks")


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    app.extensions["lean_routes"].route(
        "POST", r"/webhooks/stripe", _lean_stripe_webhook,
        max_body=app.config["MAX_CONTENT_LENGTH"],
    )  # fmt: skip


@bp.post("/stripe")
def stripe_webhook():  # type: ignore[no-untyped-def]
    try:
        payload = request_body(current_app.config["MAX_CONTENT_LENGTH"])
    except BadJson as exc:
        body, status = error_answer(exc)
    else:
        body, status = answer_stripe_event(payload, request.headers.get("Stripe-Signature"))
    return jsonify(body), status


def _lean_stripe_webhook(request: LeanRequest) -> tuple[dict[str, Any], int]:
    return answer_stripe_event(request.body, request.header("Stripe-Signature"))


def answer_stripe_event(payload: bytes, signature: str | None) -> tuple[dict[str, Any], int]:
    """The webhook's JSON answer and status for a raw body and its `Stripe-Signature`."""
    secrets = current_app.config["NEWSLETTER_CONFIG"].webhook_secrets
    if not secrets or not current_app.config.get("STRIPE_SECRET_KEY"):
        # 503, not 400: Stripe keeps retrying for days, so events sent before the
        # operator finishes configuring billing are not lost.
        return {"error": "billing is not configured"}, 503
    try:
        event = verify_event(payload, signature, secrets)
    except BadWebhook as exc:
        return {"error": str(exc)}, 400
    gw = gateway()
    # One connection outside any transaction for what needs none, held over the GET.
    with get_db().autocommit() as connection:
        settled = settle_from_store(connection, event)
        outcome, fetched = settled.outcome, None
        if outcome is None and settled.row is not None:
            outcome, fetched = sync_unlocked(connection, gw, event, settled.row)
    if outcome is None:
        session = db_session()
        outcome = process_event(session, gw, event, fetched)
        session.commit()
    log.info("stripe event %s %s: %s", event["id"], event["type"], outcome)
    return {"received": True, "outcome": outcome}, 200
