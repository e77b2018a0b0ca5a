"""Reader use cases. Plain functions over a Session; they flush, the boundary commits."""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from email_validator import EmailNotValidError, validate_email
from flask import current_app
from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from newsletter.billing.gateway import configured as billing_configured
from newsletter.db import utcnow
from newsletter.delivery.schedule import first_delivery, local_time
from newsletter.errors import InvalidInput, InvalidToken, NotFound
from newsletter.readers.models import Consent, ConsentKind, Reader, ReaderStatus
from newsletter.readers.suppression import email_reader, suppression_of
from newsletter.stories.coverage import BlindspotRule
from newsletter.timezones import canonical as canonical_timezone
from newsletter.tokens import Purpose, make_token, read_token, unsubscribe_token

MAX_EMAIL_LENGTH = 254  # RFC 5321 path limit less the angle brackets
MAX_LOCAL_PART_OCTETS = 64  # RFC 5321 4.5.3.1.1; email-validator 2 no longer checks it
# An RFC 2047 encoded-word (`=?utf-8?q?...?=`) is header syntax, never an address: mail
# software decodes it into something else than what was checked. Any "=?" followed later
# by "?=" is refused, a superset of the RFC's grammar.
ENCODED_WORD = re.compile(r"=\?.*\?=", re.DOTALL)

CONSENT_WORDING = (
    "Send me Both Sides Daily: one email each morning with the day's top stories from the "
    "left, center and right. I can unsubscribe at any time with one click."
)

# `Reader.consent_source` of a reader who opted in here (imports name their platform).
SIGNUP_CONSENT_SOURCE = "signup"


@dataclass(frozen=True)
class RequestInfo:
    """Where a request came from, for consent records."""

    ip: str | None
    user_agent: str | None


# In ASCII, Unicode's "C" categories are exactly the C0 controls and DEL.
_ASCII_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _has_control_characters(value: str) -> bool:
    if value.isascii():  # one regex pass instead of a category look-up per character
        return _ASCII_CONTROL.search(value) is not None
    return any(unicodedata.category(ch).startswith("C") for ch in value)


def normalize_email(raw: str) -> str:
    """A syntactically valid address with its domain lower-cased, or `InvalidInput` (the
    only exception it raises, whatever the text).

    Checks syntax only (no DNS): signup must not depend on a resolver. Refused with a
    message saying why: control characters (CR/LF included), more than 254 characters,
    a local part over 64 octets, RFC 2047 encoded-words, and anything email-validator
    refuses (quoted local parts and non-ASCII local parts included). An accepted address
    is ASCII (an international domain comes back in its punycode form).
    """
    if raw is None or not raw.strip():
        raise InvalidInput("Please enter your email address.")
    value = raw.strip()
    if _has_control_characters(value):
        raise InvalidInput("An email address cannot contain line breaks or control characters.")
    if len(value) > MAX_EMAIL_LENGTH:
        raise InvalidInput(f"An email address can be at most {MAX_EMAIL_LENGTH} characters long.")
    if ENCODED_WORD.search(value):
        raise InvalidInput("An email address cannot contain encoded words such as =?utf-8?q?…?=.")
    local_part = value.rpartition("@")[0]
    if len(local_part.encode("utf-8")) > MAX_LOCAL_PART_OCTETS:
        raise InvalidInput(
            f"The part before the @ can be at most {MAX_LOCAL_PART_OCTETS} characters long."
        )
    try:
        result = validate_email(value, check_deliverability=False, allow_smtputf8=False)
    except EmailNotValidError as exc:
        raise InvalidInput(f"That doesn't look like an email address: {exc}") from None
    address = result.ascii_email or result.normalized
    local, _, domain = address.rpartition("@")
    address = f"{local}@{domain.lower()}"
    if len(local.encode("utf-8")) > MAX_LOCAL_PART_OCTETS:
        raise InvalidInput(
            f"The part before the @ can be at most {MAX_LOCAL_PART_OCTETS} characters long."
        )
    if ENCODED_WORD.search(address):
        raise InvalidInput("An email address cannot contain encoded words such as =?utf-8?q?…?=.")
    if len(address) > MAX_EMAIL_LENGTH:
        raise InvalidInput(f"An email address can be at most {MAX_EMAIL_LENGTH} characters long.")
    return address


def validate_timezone(name: str | None, *, fallback: bool = False) -> str:
    """The canonical IANA name for a zone name (aliases such as Asia/Calcutta mapped).
    With `fallback`, anything unknown becomes UTC (browser input)."""
    value = canonical_timezone(name)
    if value is not None:
        return value
    if fallback:
        return "UTC"
    raise InvalidInput(
        "Please choose a time zone from the list (an IANA name such as Europe/Paris)."
    )


def validate_delivery_hour(raw: str | int | None) -> int:
    try:
        hour = int(str(raw).split(":", 1)[0])
    except (TypeError, ValueError):
        raise InvalidInput("Delivery hour must be a whole hour from 0 to 23.") from None
    if not 0 <= hour <= 23:
        raise InvalidInput("Delivery hour must be a whole hour from 0 to 23.")
    return hour


def _record_consent(
    session: Session,
    reader: Reader,
    kind: ConsentKind,
    request_info: RequestInfo,
    now: datetime,
    wording: str,
) -> None:
    session.add(
        Consent(
            reader=reader,
            kind=kind,
            wording=wording,
            ip=request_info.ip,
            user_agent=(request_info.user_agent or "")[:512] or None,
            created_at=now,
        )
    )


def find_reader(session: Session, email: str) -> Reader | None:
    return session.scalar(select(Reader).where(Reader.email_key == email.lower()))


def audience_query() -> Select[Reader]:
    """Readers who get list mail: confirmed ones only (never pending, unsubscribed, bounced)."""
    return select(Reader).where(Reader.status == ReaderStatus.CONFIRMED).order_by(Reader.id)


def get_reader(session: Session, reader_id: int) -> Reader:
    reader = session.get(Reader, reader_id)
    if reader is None:
        raise NotFound("No such reader.")
    return reader


def _resend_allowed(last_sent: datetime | None, now: datetime, setting: str) -> bool:
    interval = timedelta(seconds=current_app.config[setting])
    return last_sent is None or now - last_sent >= interval


def _external(path: str) -> str:
    """An absolute URL on BASE_URL, whatever host a request came in on (and outside any
    request: the worker sends email too)."""
    return current_app.config["BASE_URL"] + path


def confirmation_url(reader: Reader) -> str:
    token = make_token(Purpose.CONFIRM, {"r": reader.id, "e": reader.email_key})
    return _external(f"/confirm/{token}")


def signin_url(reader: Reader, next_path: str | None = None) -> str:
    """The emailed sign-in link. `next_path` (a same-site path, checked by the caller)
    is signed into the token, so where the reader lands cannot be changed on the way."""
    payload: dict[str, object] = {"r": reader.id, "n": reader.signin_nonce}
    if next_path:
        payload["x"] = next_path
    token = make_token(Purpose.SIGNIN, payload)
    return _external(f"/signin/{token}")


def unsubscribe_url_for(reader_id: int, *, base_url: str, secret: str) -> str:
    """Works outside an app context (`UnsubscribeSigner` makes the same, faster)."""
    return f"{base_url}/unsubscribe/{unsubscribe_token(reader_id, secret=secret)}"


def unsubscribe_url(reader: Reader) -> str:
    cfg = current_app.config
    return unsubscribe_url_for(reader.id, base_url=cfg["BASE_URL"], secret=cfg["SECRET_KEY"])


def send_confirmation(session: Session, reader: Reader, now: datetime) -> bool:
    """Email a confirmation link unless one went out within the resend window
    (`EMAIL_RESEND_INTERVAL`, 5 minutes: the link stays valid for days) or the address
    is suppressed. True when an email was queued."""
    if not _resend_allowed(reader.confirmation_sent_at, now, "EMAIL_RESEND_INTERVAL"):
        return False
    hours = current_app.config["CONFIRM_TOKEN_MAX_AGE"] // 3600
    context = {"confirm_url": confirmation_url(reader), "valid_hours": hours}
    if not email_reader(session, reader, "confirm", context):
        return False
    reader.confirmation_sent_at = now
    return True


def send_signin_link(
    session: Session, reader: Reader, now: datetime, *, reason: str, next_path: str | None = None
) -> bool:
    """Email a sign-in link unless one went out in the last `SIGNIN_RESEND_INTERVAL`
    seconds and is still unused (signing in clears `signin_sent_at`), or the address is
    suppressed. So when nothing is sent, the link in the last email still works."""
    if not _resend_allowed(reader.signin_sent_at, now, "SIGNIN_RESEND_INTERVAL"):
        return False
    minutes = current_app.config["SIGNIN_TOKEN_MAX_AGE"] // 60
    context = {
        "signin_url": signin_url(reader, next_path),
        "valid_minutes": minutes,
        "reason": reason,
    }
    if not email_reader(session, reader, "signin", context):
        return False
    reader.signin_sent_at = now
    return True


def signup(
    session: Session,
    raw_email: str,
    timezone: str | None,
    request_info: RequestInfo,
    *,
    now: datetime | None = None,
) -> None:
    """Start double opt-in. Behaves the same to the caller for new and known addresses,
    suppressed ones included (they get no email and nothing about them changes)."""
    now = now or utcnow()
    email = normalize_email(raw_email)
    tz = validate_timezone(timezone, fallback=True)
    reader = find_reader(session, email)
    if reader is not None and suppression_of(reader) is not None:
        return
    if reader is None:
        reader = Reader(email=email, email_key=email.lower(), timezone=tz, created_at=now)
        session.add(reader)
        session.flush()
    if reader.status == ReaderStatus.CONFIRMED:
        # Already subscribed: tell them so, with a way in, instead of a second opt-in.
        send_signin_link(session, reader, now, reason="already_subscribed")
        return
    if reader.status != ReaderStatus.PENDING:
        reader.timezone = tz
    _record_consent(session, reader, ConsentKind.SIGNUP, request_info, now, CONSENT_WORDING)
    send_confirmation(session, reader, now)
    session.flush()


def reader_for_confirm_token(session: Session, token: str) -> Reader:
    """The reader a confirmation link was sent to. Raises `InvalidToken`."""
    payload = read_token(
        Purpose.CONFIRM, token, max_age=current_app.config["CONFIRM_TOKEN_MAX_AGE"]
    )
    reader = session.get(Reader, payload.get("r"))
    if reader is None or reader.email_key != payload.get("e"):
        raise InvalidToken("This link is not valid.")
    return reader


def first_edition_label(reader: Reader, now: datetime | None = None) -> str:
    """When the reader's first (or next) edition arrives, in their own zone:
    "Thursday, December 3 at 06:00 (America/New_York)"."""
    since = reader.confirmed_at or now or utcnow()
    slot = local_time(reader.timezone, first_delivery(reader.timezone, reader.delivery_hour, since))
    return f"{slot:%A, %B} {slot.day} at {slot:%H:%M} ({reader.timezone})"


def send_welcome(session: Session, reader: Reader) -> bool:
    """The first-week email: what arrives when, free stories and the trial, how bias and
    blindspots are rated, how to change the delivery time."""
    cfg = current_app.config
    rule = BlindspotRule.current()
    context = {
        "first_edition_label": first_edition_label(reader),
        "delivery_label": f"{reader.delivery_hour:02d}:00 ({reader.timezone})",
        "free_per_month": cfg["FREE_STORIES_PER_MONTH"],
        "trial_days": cfg["TRIAL_DAYS"],
        "billing": billing_configured(),
        "blindspot_share": round(rule.max_share * 100),
        "blindspot_sources": rule.min_sources,
        "account_url": _external("/account"),
        "archive_url": _external("/editions"),
    }
    return email_reader(session, reader, "welcome", context)


def confirm(
    session: Session, token: str, request_info: RequestInfo, *, now: datetime | None = None
) -> Reader:
    """Confirm the subscription a link was sent for, and send the welcome email.
    Opening it twice is harmless (one welcome)."""
    now = now or utcnow()
    reader = reader_for_confirm_token(session, token)
    if reader.status == ReaderStatus.CONFIRMED:
        return reader
    if suppression_of(reader) is not None:
        raise InvalidToken("This address could not receive our emails, so it cannot be confirmed.")
    reader.status = ReaderStatus.CONFIRMED
    reader.confirmed_at = now
    reader.unsubscribed_at = None
    reader.consent_source, reader.consent_at = SIGNUP_CONSENT_SOURCE, now
    reader.invite_queued_at = None
    _record_consent(session, reader, ConsentKind.CONFIRM, request_info, now, CONSENT_WORDING)
    send_welcome(session, reader)
    session.flush()
    return reader


def reader_for_unsubscribe_token(session: Session, token: str) -> Reader:
    payload = read_token(Purpose.UNSUBSCRIBE, token, max_age=None)
    reader = session.get(Reader, payload.get("r"))
    if reader is None:
        raise InvalidToken("This link is not valid.")
    return reader


def unsubscribe(
    session: Session, reader: Reader, request_info: RequestInfo, *, now: datetime | None = None
) -> None:
    """Stop all list mail to the reader at once. Repeating it changes nothing."""
    if reader.status == ReaderStatus.UNSUBSCRIBED:
        return
    now = now or utcnow()
    reader.status = ReaderStatus.UNSUBSCRIBED
    reader.unsubscribed_at = now
    _record_consent(session, reader, ConsentKind.UNSUBSCRIBE, request_info, now, "")
    session.flush()


def resubscribe(
    session: Session, reader: Reader, request_info: RequestInfo, *, now: datetime | None = None
) -> None:
    """A signed-in reader (their mailbox is proven) opts back in without a new confirmation."""
    if reader.status == ReaderStatus.CONFIRMED:
        return
    if suppression_of(reader) is not None:
        raise InvalidInput(
            "We can't send email to this address any more, so we can't subscribe it. "
            "Please sign up again with another address."
        )
    now = now or utcnow()
    reader.status = ReaderStatus.CONFIRMED
    reader.confirmed_at = reader.confirmed_at or now
    reader.unsubscribed_at = None
    _record_consent(session, reader, ConsentKind.RESUBSCRIBE, request_info, now, CONSENT_WORDING)
    session.flush()


def update_delivery(session: Session, reader: Reader, hour: str | int, timezone: str) -> None:
    reader.delivery_hour = validate_delivery_hour(hour)
    reader.timezone = validate_timezone(timezone)
    session.flush()


def make_staff(session: Session, raw_email: str) -> Reader:
    reader = find_reader(session, normalize_email(raw_email))
    if reader is None:
        raise NotFound(f"No reader with the address {raw_email.strip()}; they must sign up first.")
    reader.is_staff = True
    session.flush()
    return reader
