"""Every signed link token the app hands out is made and checked here.

Tokens are HMAC-signed with SECRET_KEY and a per-purpose salt, so a sign-in token can never
be used as an unsubscribe token. Signatures are compared in constant time (itsdangerous
uses `hmac.compare_digest`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import time
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

from newsletter.errors import InvalidToken

MAX_TOKEN_LENGTH = 512


class Purpose(StrEnum):
    CONFIRM = "confirm"
    SIGNIN = "signin"
    UNSUBSCRIBE = "unsubscribe"
    # The reading cookie set by a tracked link: may read stories, nothing else.
    READING = "reading"
    # One story page view, which the page's script sends back to charge the read.
    READ_VIEW = "read-view"


def _secret() -> str:
    return current_app.config["SECRET_KEY"]


@lru_cache(maxsize=32)
def _serializer(secret: str, purpose: Purpose, expires: bool) -> URLSafeSerializer:
    cls = URLSafeTimedSerializer if expires else URLSafeSerializer
    return cls(secret, salt=purpose.value)


def make_token(
    purpose: Purpose, payload: dict[str, Any], *, expires: bool = True, secret: str | None = None
) -> str:
    """`secret` defaults to the app's SECRET_KEY; pass it to sign outside an app context."""
    return _serializer(secret or _secret(), purpose, expires).dumps(payload)


def read_token(purpose: Purpose, token: str, *, max_age: int | None = None) -> dict[str, Any]:
    """The payload of a valid token; `InvalidToken` for anything else.

    `max_age=None` means the token does not expire (unsubscribe links must work forever).
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("This link is not valid.")
    try:
        if max_age is None:
            payload = _serializer(_secret(), purpose, False).loads(token)
        else:
            timed = _serializer(_secret(), purpose, True)
            payload = timed.loads(token, max_age=max_age)  # type: ignore[call-arg]
    except SignatureExpired:
        raise InvalidToken("This link has expired.", expired=True) from None
    except BadSignature:
        raise InvalidToken("This link is not valid.") from None
    if not isinstance(payload, dict):
        raise InvalidToken("This link is not valid.")
    return payload


# --- tracked links -----------------------------------------------------------------------
# Every story link in an edition is BASE_URL/r/<token>, where the token binds reader,
# edition and story. It must stay short (an edition has a dozen of them per reader) and
# cheap to make (a hundred thousand readers per edition), so it is not itsdangerous JSON
# but three varints and an 80-bit truncated HMAC-SHA256, base64url without padding.

LINK_MAC_BYTES = 10
_B64URL = re.compile(r"[A-Za-z0-9_-]+")
MAX_LINK_TOKEN_LENGTH = 64


@dataclass(frozen=True)
class LinkClaims:
    reader_id: int
    edition_id: int
    story_id: int


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _read_varints(data: bytes, count: int) -> list[int] | None:
    values: list[int] = []
    value = shift = 0
    for byte in data:
        value |= (byte & 0x7F) << shift
        if byte & 0x80:
            shift += 7
            if shift > 63:
                return None
            continue
        values.append(value)
        value = shift = 0
    return values if len(values) == count and shift == 0 else None


class CompactSigner:
    """Short tokens for a fixed number of non-negative integers: the varints, for a timed
    token the second it was made, and an 80-bit truncated HMAC-SHA256 under a key derived
    from the secret and a label (so one kind of token never passes for another);
    base64url without padding. About a tenth of the CPU of an itsdangerous token, which
    matters on the paths that make or check one per request (tracked redirects, reading
    cookies, read confirmations)."""

    def __init__(self, secret: str, label: bytes, fields: int, *, timed: bool) -> None:
        key = hashlib.sha256(label + b"\x00" + secret.encode()).digest()
        self._mac = hmac.new(key, digestmod=hashlib.sha256)
        self._count = fields + (1 if timed else 0)
        self.timed = timed

    def sign(self, *values: int, now: float | None = None) -> str:
        if self.timed:
            values = (*values, int(time.time() if now is None else now))
        payload = b"".join(_varint(v) for v in values)
        mac = self._mac.copy()
        mac.update(payload)
        raw = payload + mac.digest()[:LINK_MAC_BYTES]
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")

    def verify(self, token: str, *, max_age: int | None = None) -> list[int]:
        """The values signed (without the time); `InvalidToken` for anything else, and
        for a timed token older than `max_age` seconds (or made in the future)."""
        if not token or len(token) > MAX_LINK_TOKEN_LENGTH or not _B64URL.fullmatch(token):
            raise InvalidToken("This link is not valid.")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except (ValueError, binascii.Error):
            raise InvalidToken("This link is not valid.") from None
        payload, given = raw[:-LINK_MAC_BYTES], raw[-LINK_MAC_BYTES:]
        mac = self._mac.copy()
        mac.update(payload)
        if len(raw) <= LINK_MAC_BYTES or not hmac.compare_digest(
            mac.digest()[:LINK_MAC_BYTES], given
        ):
            raise InvalidToken("This link is not valid.")
        values = _read_varints(payload, self._count)
        if values is None:
            raise InvalidToken("This link is not valid.")
        if self.timed:
            made = values.pop()
            age = time.time() - made
            if max_age is not None and not -CLOCK_SKEW_SECONDS <= age <= max_age:
                raise InvalidToken("This link has expired.", expired=True)
        return values


# A token made this many seconds "in the future" still passes (clocks of several servers).
CLOCK_SKEW_SECONDS = 60


class LinkSigner:
    """Signs and verifies tracked-link tokens with a key derived from SECRET_KEY."""

    def __init__(self, secret: str) -> None:
        self._signer = CompactSigner(secret, b"bsd-tracked-link", 3, timed=False)

    def sign(self, reader_id: int, edition_id: int, story_id: int) -> str:
        return self._signer.sign(reader_id, edition_id, story_id)

    def verify(self, token: str) -> LinkClaims:
        return LinkClaims(*self._signer.verify(token))


@lru_cache(maxsize=8)
def _link_signer(secret: str) -> LinkSigner:
    return LinkSigner(secret)


def link_signer() -> LinkSigner:
    return _link_signer(_secret())


# --- compact tokens for the reading paths -------------------------------------------------
# The reading cookie (reader, edition) and the story page's per-view token (reader, story,
# edition, the meter's month as yyyymm) are made or checked on every tracked redirect and
# read confirmation. An edition of 0 stands for "none".

_COMPACT_FIELDS = {Purpose.READING: 2, Purpose.READ_VIEW: 4}


@lru_cache(maxsize=16)
def _compact(secret: str, purpose: Purpose) -> CompactSigner:
    label = b"bsd-" + purpose.value.encode()
    return CompactSigner(secret, label, _COMPACT_FIELDS[purpose], timed=True)


def make_compact(purpose: Purpose, *values: int | None, secret: str | None = None) -> str:
    """`secret` defaults to the app's SECRET_KEY; pass it to sign outside an app context."""
    return _compact(secret or _secret(), purpose).sign(*(v or 0 for v in values))


def read_compact(purpose: Purpose, token: str, *, max_age: int) -> list[int | None]:
    """The values of a valid, unexpired token, 0 given back as None."""
    return [v or None for v in _compact(_secret(), purpose).verify(token, max_age=max_age)]
