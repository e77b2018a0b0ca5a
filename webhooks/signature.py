"""Stripe webhook signatures: `Stripe-Signature: t=<unix time>,v1=<hex HMAC-SHA256>`.

Stripe's documented format: items separated by `,`, each `prefix=value`; `t` is the
timestamp, each `v1` a signature (one per active secret while a secret is rolled), and
other schemes (`v0`, test mode) are ignored. Each `v1` is the HMAC-SHA256, under the
endpoint's secret, of `<t>.<raw body>`, as stripe-python's `WebhookSignature` computes.

The header is parsed strictly before anything is checked: exactly one `t` (ASCII digits,
no sign, no leading zero), every item `key=value` with no whitespace, every `v1` 64 hex
digits, at most `MAX_HEADER_LENGTH` characters. Anything else is `BadWebhook` (400):
stripe-python takes the first item whose key is exactly `t`, so a header that a lenient
reader and the library read differently could pass a recent timestamp to one check and
an old signed one to the other. The tolerance is then checked, both ways (a post-dated
signature would otherwise outlive it), against that one signed `t`.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from newsletter.billing.stripe_objects import MalformedEvent, check_event
from newsletter.jsonbody import BadJson, parse_json_body

TOLERANCE_SECONDS = 300
# A timestamp and a few signatures take under 300 characters.
MAX_HEADER_LENGTH = 2048

_ITEM = re.compile(r"([a-z0-9]+)=([!-+\--<>-~]+)")  # printable ASCII but `,` and `=`
_TIMESTAMP = re.compile(r"[1-9][0-9]{0,11}")
_V1 = re.compile(r"[0-9a-f]{64}")


class BadWebhook(Exception):
    """The request is not a Stripe event we can trust: answer 400."""


@dataclass(frozen=True)
class SignatureHeader:
    timestamp: int
    signatures: tuple[str, ...]  # the v1 ones


def parse_header(header: str | None) -> SignatureHeader:
    """The one timestamp and the v1 signatures of a `Stripe-Signature` header."""
    if not header:
        raise BadWebhook("missing Stripe-Signature header")
    if len(header) > MAX_HEADER_LENGTH:
        raise BadWebhook("Stripe-Signature is too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        match = _ITEM.fullmatch(item)
        if match is None:
            raise BadWebhook("Stripe-Signature is malformed: each item must be key=value")
        key, value = match.groups()
        if key == "t":
            if timestamp is not None:
                raise BadWebhook("Stripe-Signature has more than one timestamp")
            if _TIMESTAMP.fullmatch(value) is None:
                raise BadWebhook("Stripe-Signature's timestamp is not a Unix time")
            timestamp = int(value)
        elif key == "v1":
            if _V1.fullmatch(value) is None:
                raise BadWebhook("Stripe-Signature's v1 is not a hex HMAC-SHA256")
            signatures.append(value)
    if timestamp is None:
        raise BadWebhook("Stripe-Signature has no timestamp")
    if not signatures:
        raise BadWebhook("Stripe-Signature has no v1 signature")
    return SignatureHeader(timestamp, tuple(signatures))


def signature_for(payload: bytes, timestamp: int, secret: str) -> str:
    """The v1 signature Stripe sends for `payload` signed at `timestamp`."""
    mac = hmac.new(secret.encode(), b"%d." % timestamp, hashlib.sha256)
    mac.update(payload)
    return mac.hexdigest()


def verify_signature(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    tolerance: int = TOLERANCE_SECONDS,
    now: float | None = None,
) -> SignatureHeader:
    """The parsed header, once one of its v1 signatures is the body's under one of
    `secrets` and its timestamp is within `tolerance` of `now`; else `BadWebhook`."""
    parsed = parse_header(header)
    now = time.time() if now is None else now
    if parsed.timestamp > now + tolerance:
        raise BadWebhook("signature timestamp is in the future")
    if parsed.timestamp < now - tolerance:
        raise BadWebhook("signature timestamp is too old")
    for secret in secrets:
        expected = signature_for(payload, parsed.timestamp, secret)
        if any(hmac.compare_digest(expected, given) for given in parsed.signatures):
            return parsed
    raise BadWebhook("no signature matches")


def verify_event(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    tolerance: int = TOLERANCE_SECONDS,
    now: float | None = None,
) -> dict[str, Any]:
    """The event as a dict, once the signature, its age and the body check out: a body
    is parsed (`newsletter.jsonbody`) and its shape checked (`check_event`) only after
    its signature, so nothing unsigned reaches the parser. The body's size is bounded by
    whoever read it."""
    verify_signature(payload, header, secrets, tolerance=tolerance, now=now)
    try:
        return check_event(parse_json_body(payload))
    except (BadJson, MalformedEvent) as exc:
        raise BadWebhook(exc.message) from None
