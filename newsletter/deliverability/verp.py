"""VERP (variable envelope return path): each delivery leaves with its own envelope
sender, `<local>+<token>@<domain>` from BOUNCE_ADDRESS, so a bounce that comes back
later names the exact delivery (and through it the edition and the reader) without
guessing from the report's text.

Mail that is no delivery (transactional, staff tests) is sent from BOUNCE_ADDRESS as it
is, so its bounces still reach the bounce mailbox.
"""

from __future__ import annotations

import logging
from functools import lru_cache

from newsletter.tokens import BounceTokens

log = logging.getLogger(__name__)


@lru_cache(maxsize=4)
def _tokens(secret: str) -> BounceTokens:
    return BounceTokens(secret)


def return_path(bounce_address: str, secret: str, delivery_id: int | None) -> str:
    """The envelope sender for one message: the delivery's VERP address, or the bounce
    address itself for mail that is no delivery."""
    if delivery_id is None:
        return bounce_address
    local, _, domain = bounce_address.rpartition("@")
    return f"{local}+{_tokens(secret).make(delivery_id)}@{domain}"


def delivery_of(address: str, bounce_address: str, secret: str) -> int | None:
    """The delivery id a VERP address names, or None: not one of ours, or a token that
    does not verify (forged or damaged: logged, then ignored)."""
    address = address.strip().strip("<>").strip()
    local, _, domain = address.rpartition("@")
    base_local, _, base_domain = bounce_address.rpartition("@")
    if not local or domain.lower() != base_domain.lower():
        return None
    prefix = base_local.lower() + "+"
    if not local.lower().startswith(prefix):
        return None
    token = local[len(prefix) :]
    delivery_id = _tokens(secret).read(token)
    if delivery_id is None:
        log.warning("bounce address with a token that does not verify: %r", address[:200])
    return delivery_id
