"""The sending services' bounce and complaint webhooks: `POST /webhooks/ses`,
`/webhooks/postmark`, `/webhooks/mailgun`, `/webhooks/sendgrid`. Thin: verify the
provider's way (`newsletter.deliverability.providers.*`), hand each report to
`record_report`, commit once, answer what became of them.

A provider that is not configured answers 404; a request that is not from the provider
401 (Postmark's basic auth) or 403, with nothing stored; a signed body that is not the
provider's shape 400. Redelivered events answer 200 as duplicates and change nothing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from flask.typing import ResponseReturnValue

from newsletter.db import db_session, utcnow
from newsletter.deliverability.providers import (
    Malformed,
    Unauthentic,
    mailgun,
    postmark,
    sendgrid,
    ses,
)
from newsletter.deliverability.reports import BounceReport, claim_token, record_report
from newsletter.jsonbody import BadJson, error_answer, parse_json_body, request_body

log = logging.getLogger(__name__)

bp = Blueprint("deliverability_webhooks", __name__, url_prefix="/webhooks")

# SendGrid posts batches; the others one event. Both well above what they send.
MAX_BODY_BYTES = 4 * 1024 * 1024


def init_app(app: Flask) -> None:
    from newsletter.extensions import csrf

    app.register_blueprint(bp)
    csrf.exempt(bp)  # each provider authenticates its requests; there is no cookie


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.headers = headers or {}


def _setting(name: str) -> Any:
    return current_app.config.get(name)


def _test_base() -> str | None:
    """Tests serve SNS's certificate from a local server; never honoured in production."""
    if current_app.testing and not current_app.config.get("PRODUCTION"):
        return current_app.config.get("SNS_TEST_URL_BASE")
    return None


def _body() -> bytes:
    return request_body(MAX_BODY_BYTES)


def _json(raw: bytes) -> Any:
    return parse_json_body(raw, max_bytes=MAX_BODY_BYTES)


def _record(source: str, reports: list[BounceReport], token: str | None = None):  # type: ignore[no-untyped-def]
    session = db_session()
    now = utcnow()
    if token is not None and not claim_token(session, source, token, now):
        session.rollback()
        raise _Refused(403, "this request was seen before (replayed token)")
    counts: Counter[str] = Counter()
    for report in reports:
        outcome = record_report(session, report, now=now)
        counts[outcome.status.value] += 1
        if outcome.changed:
            log.info("%s report %s: %s", source, report.event_id, outcome.describe())
    session.commit()
    return jsonify({"received": len(reports), **counts}), 200


def _answer(handler):  # type: ignore[no-untyped-def]
    try:
        return handler()
    except _Refused as exc:
        return jsonify({"error": str(exc)}), exc.status, exc.headers
    except BadJson as exc:
        body, status = error_answer(exc)
        return jsonify(body), status
    except Unauthentic as exc:
        return jsonify({"error": f"not authentic: {exc}"}), 403
    except Malformed as exc:
        return jsonify({"error": f"malformed event: {exc}"}), 400


def _not_configured() -> ResponseReturnValue:
    return jsonify({"error": "not found"}), 404


@bp.post("/ses")
def ses_webhook() -> ResponseReturnValue:
    topics = frozenset(
        t.strip() for t in (_setting("SES_TOPIC_ARNS") or "").split(",") if t.strip()
    )
    if not topics:
        return _not_configured()

    def handle():  # type: ignore[no-untyped-def]
        certificates = current_app.extensions.get("sns_certificates")
        if certificates is None:
            certificates = ses.Certificates(test_base=_test_base())
            current_app.extensions["sns_certificates"] = certificates
        message = ses.verify(_json(_body()), certificates, topics)
        if message["Type"] == "SubscriptionConfirmation":
            try:
                ses.confirm_subscription(message, ses.fetch, test_base=_test_base())
            except OSError as exc:
                # SNS sends the confirmation again later: say so rather than fail silently.
                log.warning("SNS subscription to %s not confirmed: %s", message["TopicArn"], exc)
                raise _Refused(502, "the subscription could not be confirmed") from None
            log.info("SNS subscription to %s confirmed", message["TopicArn"])
            return jsonify({"confirmed": True}), 200
        if message["Type"] == "UnsubscribeConfirmation":
            return jsonify({"received": 0}), 200
        return _record("ses", ses.parse(message))

    return _answer(handle)  # type: ignore[no-any-return]


@bp.post("/postmark")
def postmark_webhook() -> ResponseReturnValue:
    user, password = _setting("POSTMARK_WEBHOOK_USER"), _setting("POSTMARK_WEBHOOK_PASSWORD")
    if not user or not password:
        return _not_configured()

    def handle():  # type: ignore[no-untyped-def]
        try:
            postmark.check_auth(request.headers.get("Authorization"), user, password)
        except Unauthentic as exc:
            raise _Refused(401, str(exc), {"WWW-Authenticate": 'Basic realm="webhooks"'}) from None
        return _record("postmark", postmark.parse(_json(_body())))

    return _answer(handle)  # type: ignore[no-any-return]


@bp.post("/mailgun")
def mailgun_webhook() -> ResponseReturnValue:
    key = _setting("MAILGUN_WEBHOOK_SIGNING_KEY")
    if not key:
        return _not_configured()

    def handle():  # type: ignore[no-untyped-def]
        payload = _json(_body())
        tolerance = int(_setting("MAILGUN_WEBHOOK_TOLERANCE_SECONDS") or 300)
        token = mailgun.verify(payload, key, now=time.time(), tolerance=tolerance)
        return _record("mailgun", mailgun.parse(payload), token=token)

    return _answer(handle)  # type: ignore[no-any-return]


@bp.post("/sendgrid")
def sendgrid_webhook() -> ResponseReturnValue:
    configured = _setting("SENDGRID_WEBHOOK_PUBLIC_KEY")
    if not configured:
        return _not_configured()

    def handle():  # type: ignore[no-untyped-def]
        key = current_app.extensions.get("sendgrid_public_key")
        if key is None:
            try:
                key = sendgrid.load_public_key(configured)
            except ValueError as exc:
                log.error("%s", exc)
                raise _Refused(503, "the SendGrid webhook is misconfigured") from None
            current_app.extensions["sendgrid_public_key"] = key
        raw = _body()
        sendgrid.verify(
            raw,
            request.headers.get("X-Twilio-Email-Event-Webhook-Signature"),
            request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp"),
            key,
            now=time.time(),
            tolerance=int(_setting("SENDGRID_WEBHOOK_TOLERANCE_SECONDS") or 300),
        )
        return _record("sendgrid", sendgrid.parse(_json(raw)))

    return _answer(handle)  # type: ignore[no-any-return]
