"""Stripe webhook signatures: `Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256>`.

The HMAC check is stripe-python's own (`WebhookSignature.verify_header`), tried against
every configured secret so a secret can be rotated without dropping events. The library
only refuses old timestamps; a timestamp too far in the future is refused here too, so a
signature cannot be made to outlive the tolerance by post-dating it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import stripe

TOLERANCE_SECONDS = 300


class BadWebhook(Exception):
    """The request is not a Stripe event we can trust: answer 400."""


def _timestamp(header: str) -> int:
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t":
            try:
                return int(value)
            except ValueError:
                break
    raise BadWebhook("Stripe-Signature has no timestamp")


def verify_event(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    tolerance: int = TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """The event as a dict, once the signature, its age and the body check out."""
    if not header:
        raise BadWebhook("missing Stripe-Signature header")
    timestamp = _timestamp(header)
    now = time.time() if now is None else now
    if timestamp > now + tolerance:
        raise BadWebhook("signature timestamp is in the future")
    if timestamp < now - tolerance:
        raise BadWebhook("signature timestamp is too old")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise BadWebhook("body is not UTF-8") from None
    for secret in secrets:
        try:
            # The age is checked above with our own `now`; no second clock read here.
            stripe.WebhookSignature.verify_header(text, header, secret, tolerance=None)
            break
        except stripe.SignatureVerificationError:
            continue
    else:
        raise BadWebhook("no signature matches")
    try:
        event = json.loads(text)
    except ValueError:
        raise BadWebhook("body is not JSON") from None
    if not (
        isinstance(event, dict)
        and isinstance(event.get("id"), str)
        and event["id"]
        and isinstance(event.get("type"), str)
        and isinstance(event.get("data"), dict)
        and isinstance(event["data"].get("object"), dict)
    ):
        raise BadWebhook("body is not a Stripe event")
    return event
