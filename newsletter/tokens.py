"""Every signed token the app hands out is made and checked here: link tokens, and the
Message-IDs that name a message (signed so they are stable per edition and reader).

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
from email.utils import make_msgid
from enum import StrEnum
from functools import lru_cache
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer
from itsdangerous.encoding import base64_encode

from newsletter.errors import InvalidToken
from newsletter.mail.message import sender_domain

MAX_TOKEN_LENGTH = 512


class Purpose(StrEnum):
    CONFIRM = "confirm"
    SIGNIN = "signin"
    UNSUBSCRIBE = "unsubscribe"
    # The reading cookie set by a tracked link: may read stories, nothing else.
    READING = "reading"
    # One story page view, which the page's script sends back to charge the read.
    READ_VIEW = "read-view"
    # The emailed link that confirms "delete my account".
    ERASE = "erase"


def _secret() -> str:
    return current_app.config["SECRET_KEY"]


@lru_cache(maxsize=32)
def _serializer(
    secret: str, purpose: Purpose, expires: bool
) -> URLSafeSerializer | URLSafeTimedSerializer:
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


# --- unsubscribe links ------------------------------------------------------------------


def unsubscribe_token(reader_id: int, *, secret: str | None = None) -> str:
    """Never expires: an unsubscribe link in a year-old email must still work."""
    return make_token(Purpose.UNSUBSCRIBE, {"r": reader_id}, expires=False, secret=secret)


class UnsubscribeSigner:
    """`unsubscribe_token(reader_id, secret=secret)`, byte for byte, at a fraction of the
    cost, for the send loop (one per reader).

    The token is itsdangerous' `URLSafeSerializer` output, base64url(compact JSON) "."
    base64url(HMAC), which `read_token(Purpose.UNSUBSCRIBE, token, max_age=None)` accepts.
    Done through the serializer, each call re-derives the HMAC key, dumps JSON and tries
    zlib on it (never smaller for a payload this short); here the key is derived once,
    from the same itsdangerous signer, and each call copies a pre-keyed HMAC.

    The shortcut checks itself against the real thing when made; should a future
    itsdangerous change its format, it steps aside and the slow path is used.
    """

    def __init__(self, secret: str) -> None:
        self.secret = secret
        signer = _serializer(secret, Purpose.UNSUBSCRIBE, False).make_signer()
        self._sep = signer.sep
        self._mac = hmac.new(signer.derive_key(), digestmod=signer.digest_method)
        self.fast = all(
            self._fast(n) == unsubscribe_token(n, secret=secret) for n in (1, 12345, 2**31 + 7)
        )

    def _fast(self, reader_id: int) -> str:
        payload = base64_encode(b'{"r":%d}' % reader_id)  # compact JSON, as itsdangerous
        mac = self._mac.copy()
        mac.update(payload)
        return (payload + self._sep + base64_encode(mac.digest())).decode("ascii")

    def sign(self, reader_id: int) -> str:
        if self.fast:
            return self._fast(reader_id)
        return unsubscribe_token(reader_id, secret=self.secret)


# --- Message-IDs -------------------------------------------------------------------------


def new_message_id(mail_from: str) -> str:
    """A fresh Message-ID, for a message that is sent once (transactional, test sends)."""
    return make_msgid(domain=sender_domain(mail_from))


class MessageIds:
    """Stable Message-IDs for many messages sharing leading parts (e.g. an edition): the
    same as `stable_message_id(secret, mail_from, *prefix, *rest)`, with the HMAC key
    and the sender's domain worked out once rather than per message."""

    def __init__(self, secret: str, mail_from: str, *prefix: object) -> None:
        self._mac = hmac.new(secret.encode(), digestmod=hashlib.sha256)
        self._prefix = tuple(str(p) for p in prefix)
        self._domain = sender_domain(mail_from)

    def make(self, *rest: object) -> str:
        key = ".".join((*self._prefix, *(str(p) for p in rest)))
        mac = self._mac.copy()
        mac.update(key.encode())
        return f"<{key}.{mac.hexdigest()[:16]}@{self._domain}>"


def stable_message_id(secret: str, mail_from: str, *parts: object) -> str:
    """The same Message-ID every time for the same parts (e.g. edition and reader), so a
    message resent after a crash can be recognised as the twin it is."""
    return MessageIds(secret, mail_from).make(*parts)


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
    base64url without padding. Far cheaper than an itsdangerous token (no JSON, no
    timestamp parsing), which matters on the paths that make or check one per request
    (tracked redirects, reading cookies, read confirmations)."""

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


# --- VERP bounce tokens ------------------------------------------------------------------
# The local-part suffix of a delivery's Return-Path: "<delivery id>.<mac>", the MAC an
# 80-bit truncated HMAC-SHA256 in lower-case base32, since some relays lower-case
# local parts.

BOUNCE_MAC_BYTES = 10
_BOUNCE_TOKEN = re.compile(r"([0-9]{1,18})\.([a-z2-7]{16})")


class BounceTokens:
    """Makes and reads VERP tokens naming a delivery; one per send (the key is derived
    once)."""

    def __init__(self, secret: str) -> None:
        self._mac = hmac.new(
            hashlib.sha256(b"bounce-token\x00" + secret.encode()).digest(),
            digestmod=hashlib.sha256,
        )

    def _sign(self, delivery_id: int) -> str:
        mac = self._mac.copy()
        mac.update(str(delivery_id).encode())
        return base64.b32encode(mac.digest()[:BOUNCE_MAC_BYTES]).decode("ascii").lower()

    def make(self, delivery_id: int) -> str:
        return f"{delivery_id}.{self._sign(delivery_id)}"

    def read(self, token: str) -> int | None:
        """The delivery id a genuine token names; None for anything else."""
        found = _BOUNCE_TOKEN.fullmatch(token.strip().lower())
        if found is None:
            return None
        delivery_id = int(found.group(1))
        if not hmac.compare_digest(self._sign(delivery_id), found.group(2)):
            return None
        return delivery_id
