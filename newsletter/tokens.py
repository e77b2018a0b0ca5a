"""Every signed link token the app hands out is made and checked here.

Tokens are HMAC-signed with SECRET_KEY and a per-purpose salt, so a sign-in token can never
be used as an unsubscribe token. Signatures are compared in constant time (itsdangerous
uses `hmac.compare_digest`).
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

from newsletter.errors import InvalidToken

MAX_TOKEN_LENGTH = 512


class Purpose(StrEnum):
    CONFIRM = "confirm"
    SIGNIN = "signin"
    UNSUBSCRIBE = "unsubscribe"


def _secret() -> str:
    return current_app.config["SECRET_KEY"]


def make_token(purpose: Purpose, payload: dict[str, Any], *, expires: bool = True) -> str:
    if expires:
        return URLSafeTimedSerializer(_secret(), salt=purpose.value).dumps(payload)
    return URLSafeSerializer(_secret(), salt=purpose.value).dumps(payload)


def read_token(purpose: Purpose, token: str, *, max_age: int | None = None) -> dict[str, Any]:
    """The payload of a valid token; `InvalidToken` for anything else.

    `max_age=None` means the token does not expire (unsubscribe links must work forever).
    """
    if not token or len(token) > MAX_TOKEN_LENGTH:
        raise InvalidToken("This link is not valid.")
    try:
        if max_age is None:
            payload = URLSafeSerializer(_secret(), salt=purpose.value).loads(token)
        else:
            payload = URLSafeTimedSerializer(_secret(), salt=purpose.value).loads(
                token, max_age=max_age
            )
    except SignatureExpired:
        raise InvalidToken("This link has expired.", expired=True) from None
    except BadSignature:
        raise InvalidToken("This link is not valid.") from None
    if not isinstance(payload, dict):
        raise InvalidToken("This link is not valid.")
    return payload
