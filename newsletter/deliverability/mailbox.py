"""The bounce mailbox: reads BOUNCE_IMAP_URL (`imaps://user:pass@host[:port]/Folder`,
`imap://` without TLS), records each report it holds through `record_report`, and moves
each message out of the folder: to `Processed` once its reports are committed, to
`Unparsed` when it reports nothing we can read. Nothing is deleted.

Order matters for a job killed midway: the reports are committed first, the message is
moved after (MOVE, or COPY + \\Deleted + UID EXPUNGE without it). Killed in between, the
next run reads the message again and `record_report`'s (source, event id) dedupe makes
that a no-op.
"""

from __future__ import annotations

import contextlib
import logging
import ssl
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from flask import Flask
from imapclient import IMAPClient
from imapclient.exceptions import IMAPClientError

from newsletter.deliverability.dsn import Verp, parse_report
from newsletter.deliverability.reports import OutcomeStatus, record_report
from newsletter.errors import ConfigError, NewsletterError

log = logging.getLogger(__name__)

PROCESSED = "Processed"
UNPARSED = "Unparsed"
BATCH = 50


class MailboxError(NewsletterError):
    """The bounce mailbox cannot be reached or read."""


@dataclass(frozen=True)
class MailboxUrl:
    secure: bool
    host: str
    port: int
    user: str
    password: str
    folder: str

    @classmethod
    def parse(cls, url: str) -> MailboxUrl:
        parts = urlsplit(url)
        if parts.scheme not in ("imap", "imaps") or not parts.hostname:
            raise ConfigError("BOUNCE_IMAP_URL must look like imaps://user:password@host/INBOX")
        if not parts.username or parts.password is None:
            raise ConfigError("BOUNCE_IMAP_URL must carry the user and password")
        secure = parts.scheme == "imaps"
        try:
            port = parts.port or (993 if secure else 143)
        except ValueError:
            raise ConfigError("BOUNCE_IMAP_URL has a port that is not a number") from None
        return cls(
            secure=secure,
            host=parts.hostname,
            port=port,
            user=unquote(parts.username),
            password=unquote(parts.password),
            folder=unquote(parts.path.lstrip("/")) or "INBOX",
        )


@dataclass
class FetchSummary:
    messages: int = 0
    recorded: int = 0
    duplicates: int = 0
    unknown: int = 0
    unparsed: int = 0
    outcomes: list[str] = field(default_factory=list)

    def describe(self) -> str:
        return (
            f"{self.messages} messages: {self.recorded} reports recorded, "
            f"{self.duplicates} seen before, {self.unknown} for unknown addresses, "
            f"{self.unparsed} set aside unparsed"
        )


def _move(client: IMAPClient, uids: list[int], folder: str) -> None:
    if not uids:
        return
    if client.has_capability("MOVE"):
        client.move(uids, folder)
        return
    client.copy(uids, folder)
    client.add_flags(uids, [b"\\Deleted"])
    client.uid_expunge(uids) if client.has_capability("UIDPLUS") else client.expunge()


def _connect(url: MailboxUrl, timeout: float) -> IMAPClient:
    context = ssl.create_default_context() if url.secure else None
    client = IMAPClient(
        url.host, port=url.port, ssl=url.secure, ssl_context=context, timeout=timeout
    )
    client.login(url.user, url.password)
    return client


def fetch_bounces(app: Flask) -> FetchSummary:
    """Read the bounce mailbox once. A boundary: commits after each message's reports."""
    cfg = app.config
    if not cfg["BOUNCE_IMAP_URL"]:
        raise ConfigError("BOUNCE_IMAP_URL is not set: there is no bounce mailbox to read")
    url = MailboxUrl.parse(cfg["BOUNCE_IMAP_URL"])
    verp = Verp(cfg["BOUNCE_ADDRESS"], cfg["SECRET_KEY"])
    db = app.extensions["db"]
    summary = FetchSummary()
    try:
        client = _connect(url, float(cfg["SMTP_TIMEOUT"]))
    except (OSError, IMAPClientError) as exc:
        raise MailboxError(
            f"cannot read the bounce mailbox at {url.host}:{url.port}: {exc}"
        ) from None
    try:
        for folder in (PROCESSED, UNPARSED):
            if not client.folder_exists(folder):
                client.create_folder(folder)
        selected = client.select_folder(url.folder)
        validity = int(selected.get(b"UIDVALIDITY", 0))
        uids = client.search(["NOT", "DELETED"])
        for start in range(0, len(uids), BATCH):
            batch = uids[start : start + BATCH]
            fetched = client.fetch(batch, ["RFC822"])
            for uid in batch:
                data = fetched.get(uid, {}).get(b"RFC822")
                summary.messages += 1
                ref = f"imap:{url.folder}/{validity}/{uid}"
                reports = (
                    parse_report(data, fallback_id=ref, verp=verp, raw_ref=ref)
                    if isinstance(data, bytes)
                    else []
                )
                if not reports:
                    summary.unparsed += 1
                    _move(client, [uid], UNPARSED)
                    continue
                with app.app_context(), db.session() as session:
                    for report in reports:
                        outcome = record_report(session, report)
                        if outcome.status is OutcomeStatus.DUPLICATE:
                            summary.duplicates += 1
                        elif outcome.status is OutcomeStatus.UNKNOWN_RECIPIENT:
                            summary.unknown += 1
                        else:
                            summary.recorded += 1
                        summary.outcomes.append(f"{report.recipient}: {outcome.describe()}")
                # Committed (the session block above) before the message leaves the folder.
                _move(client, [uid], PROCESSED)
    except IMAPClientError as exc:
        raise MailboxError(f"the bounce mailbox refused a command: {exc}") from None
    finally:
        with contextlib.suppress(OSError, IMAPClientError):
            client.logout()
    log.info("bounce mailbox: %s", summary.describe())
    return summary
