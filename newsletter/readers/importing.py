"""Bringing a list over from another platform: Substack, Ghost, Mailchimp, listmonk.

`import_readers` reads one CSV export, maps each row by the platform's columns
(`PLATFORMS`; docs/readers-import-export.md says what each column means), and accepts or
rejects every row with a reason:

- a row whose consent the file documents (Mailchimp's CONFIRM_TIME, Ghost's
  subscribed_to_emails, ...) becomes a confirmed reader, with a consent record naming the
  platform and the file, and the file's date as the consent date;
- any other valid row becomes a pending reader queued for the signup confirmation email,
  which `send_queued_invites` sends at a steady rate (never all at once);
- an address already here is never duplicated (matched case-insensitively), a suppressed
  one stays as it is, and an address erased at its owner's request is refused.

Rows are written in batches (one multi-row INSERT per batch), and nothing is committed
here: the caller commits once, so a failed import leaves nothing half-written.
"""

from __future__ import annotations

import csv
import io
import ipaddress
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import IO, Any

from flask import current_app
from sqlalchemy import func, insert, select
from sqlalchemy.orm import Session

from newsletter.db import plan_each_run, table_of, utcnow
from newsletter.errors import InvalidInput
from newsletter.readers.erasure import address_hashes
from newsletter.readers.models import (
    DEFAULT_DELIVERY_HOUR,
    Consent,
    ConsentKind,
    ErasedAddress,
    Reader,
    ReaderStatus,
)
from newsletter.readers.services import normalize_email, send_confirmation, validate_timezone

BATCH = 1000  # rows per INSERT: bounded memory and statement size whatever the file
MAX_REJECTIONS_KEPT = 1000  # every rejection is counted; the first ones are listed
MAX_FILENAME = 100
NOT_UTF8 = "The file is not UTF-8 text: export it again as UTF-8 CSV"

readers_table = table_of(Reader)
consents_table = table_of(Consent)


class Platform(StrEnum):
    SUBSTACK = "substack"
    GHOST = "ghost"
    MAILCHIMP = "mailchimp"
    LISTMONK = "listmonk"


class RowRejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Mapped:
    """What a platform's row says: the address, and whether and when consent was given."""

    email: str
    documented: bool  # the file documents consent to email: imported confirmed
    consent_at: datetime | None
    evidence: str  # the columns that document it, for the consent record
    ip: str | None = None
    timezone: str | None = None


@dataclass(frozen=True)
class Rejection:
    line: int
    email: str
    reason: str


@dataclass
class ImportReport:
    platform: Platform
    filename: str
    rows: int = 0
    confirmed: int = 0
    invited: int = 0
    rejected: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    rejections: list[Rejection] = field(default_factory=list)

    @property
    def accepted(self) -> int:
        return self.confirmed + self.invited

    def reject(self, line: int, email: str, reason: str) -> None:
        self.rejected += 1
        self.reasons[reason] += 1
        if len(self.rejections) < MAX_REJECTIONS_KEPT:
            self.rejections.append(Rejection(line, email, reason))

    def summary(self) -> str:
        return (
            f"{self.rows} rows from {self.platform.value} ({self.filename}): "
            f"{self.accepted} accepted ({self.confirmed} confirmed, {self.invited} sent an "
            f"opt-in email), {self.rejected} rejected"
        )


# --- reading a platform's columns --------------------------------------------------------


def _cell(row: dict[str, str], *names: str) -> str:
    for name in names:
        value = row.get(name)
        if value:
            return value.strip()
    return ""


def _truthy(value: str) -> bool:
    return value.strip().lower() in {"true", "1", "yes", "y", "t"}


def parse_date(value: str, column: str) -> datetime | None:
    """An export's timestamp as aware UTC: ISO 8601 with or without a zone (a missing zone
    is UTC, as every one of these platforms writes it), "Z" and "+00" included."""
    value = value.strip()
    if not value:
        return None
    text = value.replace("Z", "+00:00").replace("z", "+00:00")
    if len(text) >= 3 and text[-3] in "+-" and text[-3:][1:].isdigit() and ":" not in text[-3:]:
        text += ":00"  # PostgreSQL's "+00" (listmonk)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise RowRejected(f"{column} is not a date: {value[:40]!r}") from None
    parsed = parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    if parsed > utcnow():
        raise RowRejected(f"{column} is in the future")
    return parsed


def _ip(value: str) -> str | None:
    try:
        return str(ipaddress.ip_address(value.strip())) if value.strip() else None
    except ValueError:
        return None


def _substack(row: dict[str, str]) -> Mapped:
    # Substack lists readers who subscribed there themselves; `email_disabled` marks
    # those who turned its emails off.
    if _truthy(_cell(row, "email_disabled")):
        raise RowRejected("emails turned off on Substack")
    created = parse_date(_cell(row, "created_at"), "created_at")
    return Mapped(
        email=_cell(row, "email"),
        documented=created is not None,
        consent_at=created,
        evidence="subscribed on Substack (created_at)",
    )


def _ghost(row: dict[str, str]) -> Mapped:
    if _cell(row, "deleted_at"):
        raise RowRejected("deleted on Ghost")
    subscribed = _cell(row, "subscribed_to_emails").lower()
    if subscribed in {"false", "0", "no"}:
        raise RowRejected("not subscribed to emails on Ghost")
    created = parse_date(_cell(row, "created_at"), "created_at")
    return Mapped(
        email=_cell(row, "email"),
        documented=_truthy(subscribed),
        consent_at=created,
        evidence="subscribed_to_emails on Ghost",
    )


def _mailchimp(row: dict[str, str]) -> Mapped:
    # One export holds three files: subscribed, unsubscribed (UNSUB_TIME) and cleaned
    # (CLEAN_TIME: Mailchimp's word for addresses that bounced).
    if _cell(row, "UNSUB_TIME"):
        raise RowRejected("unsubscribed on Mailchimp")
    if _cell(row, "CLEAN_TIME"):
        raise RowRejected("cleaned (bounced) on Mailchimp")
    confirmed = parse_date(_cell(row, "CONFIRM_TIME"), "CONFIRM_TIME")
    optin = parse_date(_cell(row, "OPTIN_TIME"), "OPTIN_TIME")
    zone = _cell(row, "TIMEZONE")
    return Mapped(
        email=_cell(row, "Email Address"),
        documented=confirmed is not None,
        consent_at=confirmed or optin,
        evidence="confirmed on Mailchimp (CONFIRM_TIME, CONFIRM_IP)",
        ip=_ip(_cell(row, "CONFIRM_IP", "OPTIN_IP")),
        timezone=validate_timezone(zone, fallback=True) if zone else None,
    )


def _listmonk(row: dict[str, str]) -> Mapped:
    # listmonk's subscriber export says whether the subscriber is blocklisted, not
    # whether they confirmed a list (that lives per list); only an explicit
    # `subscription_status` of `confirmed` documents consent.
    status = _cell(row, "status").lower()
    if status == "blocklisted":
        raise RowRejected("blocklisted on listmonk")
    if status == "disabled":
        raise RowRejected("disabled on listmonk")
    subscription = _cell(row, "subscription_status").lower()
    if subscription == "unsubscribed":
        raise RowRejected("unsubscribed on listmonk")
    created = parse_date(_cell(row, "created_at"), "created_at")
    return Mapped(
        email=_cell(row, "email"),
        documented=subscription == "confirmed",
        consent_at=created,
        evidence="confirmed list subscription on listmonk (subscription_status)",
    )


@dataclass(frozen=True)
class PlatformFormat:
    mapper: Callable[[dict[str, str]], Mapped]
    # Columns that tell this platform's export from the others (all must be present).
    marks: frozenset[str]


# What a caller may name: a platform, or "auto" (told by the file's columns).
SOURCES = ["auto", *(p.value for p in Platform)]

PLATFORMS: dict[Platform, PlatformFormat] = {
    Platform.MAILCHIMP: PlatformFormat(_mailchimp, frozenset({"Email Address"})),
    Platform.GHOST: PlatformFormat(_ghost, frozenset({"email", "subscribed_to_emails"})),
    Platform.SUBSTACK: PlatformFormat(_substack, frozenset({"email", "active_subscription"})),
    Platform.LISTMONK: PlatformFormat(_listmonk, frozenset({"uuid", "email", "status"})),
}


def detect_platform(headers: Iterable[str]) -> Platform:
    names = set(headers)
    for platform, fmt in PLATFORMS.items():
        if fmt.marks <= names:
            return platform
    raise InvalidInput(
        "This file's columns match no export we know (Substack, Ghost, Mailchimp, "
        "listmonk); name the platform with --source, or check the file's first line."
    )


# --- the import --------------------------------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    line: int
    email: str
    key: str
    mapped: Mapped


def safe_filename(name: str) -> str:
    base = os.path.basename(name.replace("\\", "/")) or "upload.csv"
    return "".join(ch if ch.isprintable() else "?" for ch in base)[:MAX_FILENAME]


def _text(stream: IO[bytes] | IO[str]) -> IO[str]:
    if isinstance(stream, io.TextIOBase):
        return stream  # type: ignore[return-value]
    return io.TextIOWrapper(stream, encoding="utf-8-sig", newline="")  # type: ignore[type-var, arg-type]


def _rows(stream: IO[str]) -> tuple[list[str], Iterator[tuple[int, dict[str, str]]]]:
    reader = csv.DictReader(stream)
    try:
        headers = [h.strip() for h in (reader.fieldnames or [])]
    except UnicodeDecodeError:
        raise InvalidInput(NOT_UTF8) from None
    except csv.Error as exc:
        raise InvalidInput(f"The file is not a readable CSV file: {exc}") from None
    if not headers:
        raise InvalidInput("The file is empty: it has no header line.")
    reader.fieldnames = headers

    def rows() -> Iterator[tuple[int, dict[str, str]]]:
        try:
            for row in reader:
                yield reader.line_num, row  # type: ignore[misc]
        except UnicodeDecodeError:
            raise InvalidInput(f"{NOT_UTF8} (after line {reader.line_num})") from None
        except csv.Error as exc:
            raise InvalidInput(f"Line {reader.line_num} is not valid CSV: {exc}") from None

    return headers, rows()


def import_readers(
    session: Session,
    stream: IO[bytes] | IO[str],
    *,
    filename: str,
    platform: Platform | None = None,
    now: datetime | None = None,
) -> ImportReport:
    """Import one export file. `platform` None: told by its columns. Raises `InvalidInput`
    for a file that cannot be read at all; every row is otherwise accepted or rejected."""
    now = now or utcnow()
    headers, rows = _rows(_text(stream))
    platform = platform or detect_platform(headers)
    fmt = PLATFORMS[platform]
    missing = fmt.marks - set(headers)
    if missing:
        raise InvalidInput(
            f"This is not a {platform.value} export: it has no {', '.join(sorted(missing))} column."
        )
    report = ImportReport(platform, safe_filename(filename))
    plan_each_run(session)  # `readers` grows under the batch lookups
    seen: dict[str, int] = {}
    batch: list[_Candidate] = []
    for line, row in rows:
        report.rows += 1
        if None in row:  # more cells than headers: csv.DictReader keeps them under None
            report.reject(line, "", "more cells than the header line has columns")
            continue
        try:
            mapped = fmt.mapper(row)
        except RowRejected as exc:
            report.reject(line, _cell(row, "email", "Email Address"), exc.reason)
            continue
        try:
            email = normalize_email(mapped.email)
        except InvalidInput as exc:
            report.reject(line, mapped.email[:254], exc.message)
            continue
        key = email.lower()
        if key in seen:
            report.reject(line, email, f"the same address as line {seen[key]}")
            continue
        seen[key] = line
        batch.append(_Candidate(line, email, key, mapped))
        if len(batch) >= BATCH:
            _write_batch(session, batch, report, now)
            batch = []
    if batch:
        _write_batch(session, batch, report, now)
    session.flush()
    return report


def _write_batch(
    session: Session, batch: list[_Candidate], report: ImportReport, now: datetime
) -> None:
    keys = [c.key for c in batch]
    known = {
        key: (status, suppression)
        for key, status, suppression in session.execute(
            select(Reader.email_key, Reader.status, Reader.suppression).where(
                Reader.email_key.in_(keys)
            )
        )
    }
    hashes = address_hashes(keys)
    erased = set(
        session.scalars(
            select(ErasedAddress.address_hash).where(ErasedAddress.address_hash.in_(hashes))
        )
    )
    source = f"{report.platform.value} export {report.filename}"
    new_readers: list[dict[str, Any]] = []
    consents: dict[str, dict[str, Any]] = {}
    for candidate, digest in zip(batch, hashes, strict=True):
        if digest in erased:
            report.reject(candidate.line, candidate.email, "erased here at the owner's request")
            continue
        if candidate.key in known:
            status, suppression = known[candidate.key]
            if suppression is not None or status == ReaderStatus.BOUNCED:
                reason = suppression.value if suppression is not None else "bounced"
                report.reject(candidate.line, candidate.email, f"suppressed here ({reason})")
            else:
                report.reject(candidate.line, candidate.email, f"already a reader ({status})")
            continue
        m = candidate.mapped
        values: dict[str, Any] = {
            "email": candidate.email,
            "email_key": candidate.key,
            "timezone": m.timezone or "UTC",
            "delivery_hour": DEFAULT_DELIVERY_HOUR,
            "created_at": now,
            "status": ReaderStatus.CONFIRMED if m.documented else ReaderStatus.PENDING,
            "confirmed_at": now if m.documented else None,
            "consent_source": source if m.documented else f"opt-in email after {source}",
            "consent_at": (m.consent_at or now) if m.documented else None,
            "invite_queued_at": None if m.documented else now,
        }
        new_readers.append(values)
        if m.documented:
            report.confirmed += 1
            when = (m.consent_at or now).isoformat(timespec="seconds")
            consents[candidate.key] = {
                "kind": ConsentKind.IMPORT,
                "wording": f"Imported from {source}: {m.evidence}, {when}.",
                "ip": m.ip,
                "user_agent": None,
                "created_at": now,
            }
        else:
            report.invited += 1
    if not new_readers:
        return
    # RETURNING hands back each new id in one round trip; looking the ids up afterwards
    # by address made PostgreSQL scan a table whose statistics still said it was empty.
    ids = session.execute(
        insert(readers_table).returning(readers_table.c.email_key, readers_table.c.id),
        new_readers,
    )
    rows = [{**consents[key], "reader_id": rid} for key, rid in ids if key in consents]
    if rows:
        session.execute(insert(consents_table), rows)


# --- the opt-in emails, at a steady rate -------------------------------------------------


def send_queued_invites(session: Session, *, now: datetime | None = None) -> int:
    """Send the signup confirmation email to the next `IMPORT_INVITES_PER_RUN` imported
    readers waiting for it (the worker runs this every minute). Rows are taken with
    SKIP LOCKED on PostgreSQL, so two workers never send the same one. Returns how many
    were sent."""
    now = now or utcnow()
    limit = int(current_app.config["IMPORT_INVITES_PER_RUN"])
    query = (
        select(Reader)
        .where(Reader.invite_queued_at.is_not(None))
        .order_by(Reader.invite_queued_at, Reader.id)
        .limit(limit)
    )
    if session.get_bind().dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    sent = 0
    for reader in session.scalars(query):
        reader.invite_queued_at = None
        if reader.status == ReaderStatus.PENDING and send_confirmation(session, reader, now):
            sent += 1
    session.flush()
    return sent


def invites_waiting(session: Session) -> int:
    return session.scalar(select(func.count()).where(Reader.invite_queued_at.is_not(None))) or 0
