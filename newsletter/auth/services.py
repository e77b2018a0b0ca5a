"""Sign-in by email link.

The link is signed, single-purpose, and expires (SIGNIN_TOKEN_MAX_AGE, 30 minutes). Opening
it only shows a button; the POST behind the button signs in and bumps the reader's nonce, so
the link works once, and a mail scanner that fetches it with GET cannot use it up.
"""

from __future__ import annotations

from datetime import datetime

from flask import current_app
from sqlalchemy import update
from sqlalchemy.orm import Session

from newsletter.db import utcnow
from newsletter.errors import InvalidToken
from newsletter.readers.models import Reader, ReaderStatus
from newsletter.readers.services import (
    find_reader,
    normalize_email,
    send_confirmation,
    send_signin_link,
)
from newsletter.tokens import Purpose, read_token


def request_signin(session: Session, raw_email: str, *, now: datetime | None = None) -> None:
    """Email a sign-in link. Same outcome to the caller whether or not the address is known."""
    now = now or utcnow()
    reader = find_reader(session, normalize_email(raw_email))
    if reader is None:
        return
    if reader.status == ReaderStatus.PENDING:
        # Not confirmed yet: the confirmation email is the way in.
        send_confirmation(session, reader, now)
    else:
        send_signin_link(session, reader, now, reason="signin")
    session.flush()


def check_signin_token(session: Session, token: str) -> Reader:
    """The reader a sign-in link is for, without using the link up."""
    payload = read_token(Purpose.SIGNIN, token, max_age=current_app.config["SIGNIN_TOKEN_MAX_AGE"])
    reader = session.get(Reader, payload.get("r"))
    if reader is None:
        raise InvalidToken("This link is not valid.")
    if reader.signin_nonce != payload.get("n"):
        raise InvalidToken("This sign-in link has already been used. Ask for a new one.")
    return reader


def consume_signin_token(session: Session, token: str) -> Reader:
    reader = check_signin_token(session, token)
    # Compare-and-set on the nonce so two simultaneous POSTs cannot both sign in.
    result = session.execute(
        update(Reader)
        .where(Reader.id == reader.id, Reader.signin_nonce == reader.signin_nonce)
        .values(signin_nonce=Reader.signin_nonce + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise InvalidToken("This sign-in link has already been used. Ask for a new one.")
    session.refresh(reader)
    return reader
