"""Sign-in by email link.

The link is signed, single-purpose, and expires (SIGNIN_TOKEN_MAX_AGE, 30 minutes). Opening
it only shows a button; the POST behind the button signs in and bumps the reader's nonce, so
the link works once, and a mail scanner that fetches it with GET cannot use it up.

Where the reader was going (`next`, e.g. the story whose paywall sent them to sign in)
travels inside the signed token: only a same-site path (`newsletter.web.safe_next`) of
at most `MAX_NEXT_LENGTH` characters is put in, and the view checks it again before it
redirects. Anything else is dropped, and the reader lands on /account.

Asking for a link sends a fresh one unless one went out in the last minute
(`SIGNIN_RESEND_INTERVAL`) and is still unused: signing in clears the time it was sent,
so "sign in, sign out, ask again" always gets a new email. A suppressed address gets
nothing (`newsletter.readers.suppression`). The caller cannot tell these cases apart,
nor an unknown address: the page's wording covers them all.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from flask import current_app
from sqlalchemy import update
from sqlalchemy.orm import Session

from newsletter.db import rowcount, utcnow
from newsletter.errors import InvalidToken
from newsletter.readers.models import Reader, ReaderStatus
from newsletter.readers.services import (
    find_reader,
    normalize_email,
    send_confirmation,
    send_signin_link,
)
from newsletter.tokens import Purpose, read_token
from newsletter.web import safe_next

# Longer paths are dropped rather than signed in: the token must stay a short link
# (`read_token` refuses tokens over 512 characters). A story path is under 100.
MAX_NEXT_LENGTH = 200


class LinkUsed(InvalidToken):
    """A genuine sign-in link that was already used (or superseded by a newer sign-in)."""


@dataclass(frozen=True)
class SigninLink:
    reader: Reader
    next_path: str | None  # where to land after signing in, as signed into the link


def signin_next(raw: str | None) -> str | None:
    """The `next` a sign-in link may carry: a same-site path, not too long; else None."""
    path = safe_next(raw, "")
    return path if path and len(path) <= MAX_NEXT_LENGTH else None


def request_signin(
    session: Session,
    raw_email: str,
    *,
    next_path: str | None = None,
    now: datetime | None = None,
) -> None:
    """Email a sign-in link, carrying `next_path` when it is a safe one (`signin_next`).
    Same outcome to the caller whether or not the address is known."""
    now = now or utcnow()
    reader = find_reader(session, normalize_email(raw_email))
    if reader is None:
        return
    if reader.status == ReaderStatus.PENDING:
        # Not confirmed yet: the confirmation email is the way in.
        send_confirmation(session, reader, now)
    else:
        send_signin_link(session, reader, now, reason="signin", next_path=signin_next(next_path))
    session.flush()


def check_signin_token(session: Session, token: str) -> SigninLink:
    """The reader a sign-in link is for, and where it leads, without using the link up."""
    payload = read_token(Purpose.SIGNIN, token, max_age=current_app.config["SIGNIN_TOKEN_MAX_AGE"])
    reader = session.get(Reader, payload.get("r"))
    if reader is None:
        raise InvalidToken("This link is not valid.")
    if reader.signin_nonce != payload.get("n"):
        raise LinkUsed("This sign-in link has already been used. Ask for a new one.")
    raw_next = payload.get("x")
    return SigninLink(reader, signin_next(raw_next) if isinstance(raw_next, str) else None)


def consume_signin_token(session: Session, token: str) -> SigninLink:
    link = check_signin_token(session, token)
    reader = link.reader
    # Compare-and-set on the nonce so two simultaneous POSTs cannot both sign in. The
    # link emailed last is now used up, so the next request may send a fresh one at once.
    touched = rowcount(
        session.execute(
            update(Reader)
            .where(Reader.id == reader.id, Reader.signin_nonce == reader.signin_nonce)
            .values(signin_nonce=Reader.signin_nonce + 1, signin_sent_at=None)
            .execution_options(synchronize_session=False)
        )
    )
    if touched != 1:
        raise LinkUsed("This sign-in link has already been used. Ask for a new one.")
    session.refresh(reader)
    return link
