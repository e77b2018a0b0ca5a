"""Mail transports, chosen by MAIL_URL.

- `smtp://[user:pass@]host:port` plain SMTP (port 25 by default)
- `smtp+starttls://…` SMTP upgraded with STARTTLS (port 587 by default)
- `smtps://…` SMTP over TLS (port 465 by default)
- `outbox:` development: writes `.eml` files to `instance/outbox/`

A 4xx reply, a timeout or a dropped connection raises `TemporaryDeliveryError` (try again
later); a 5xx reply raises `PermanentDeliveryError` (do not try this address again). Both
carry the server's reply.
"""

from __future__ import annotations

import contextlib
import smtplib
import ssl
import uuid
from pathlib import Path
from typing import Protocol
from urllib.parse import unquote, urlsplit

from newsletter.db import utcnow
from newsletter.errors import ConfigError


class DeliveryError(Exception):
    permanent = False

    def __init__(self, code: int | None, reply: str) -> None:
        super().__init__(f"{code or '---'} {reply}")
        self.code = code
        self.reply = reply


class TemporaryDeliveryError(DeliveryError):
    permanent = False


class PermanentDeliveryError(DeliveryError):
    permanent = True


class Transport(Protocol):
    def send_bytes(self, envelope_from: str, recipient: str, data: bytes) -> None: ...

    def close(self) -> None: ...


def _error_for(code: int, reply: bytes | str) -> DeliveryError:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    cls = PermanentDeliveryError if 500 <= code < 600 else TemporaryDeliveryError
    return cls(code, text)


def _sendmail(conn: smtplib.SMTP, sender: str, recipient: str, data: bytes) -> dict:
    """`smtplib.SMTP.sendmail` for one recipient, with cheaper dot-stuffing.

    smtplib runs a multi-line regex over every message to fix line ends and stuff dots,
    about half a millisecond for an edition; our messages already end every line in CRLF
    (`newsletter.mail.message`), so one `bytes.replace` does the same. Anything else
    (a hand-made message with bare LFs) goes through smtplib's own path.
    """
    if data.count(b"\n") != data.count(b"\r\n"):
        return conn.sendmail(sender, [recipient], data)
    conn.ehlo_or_helo_if_needed()
    code, reply = conn.mail(sender)
    if code != 250:
        raise smtplib.SMTPSenderRefused(code, reply, sender)
    code, reply = conn.rcpt(recipient)
    if code not in (250, 251):
        raise smtplib.SMTPRecipientsRefused({recipient: (code, reply)})
    code, reply = conn.docmd("data")
    if code != 354:
        raise smtplib.SMTPDataError(code, reply)
    payload = data.replace(b"\r\n.", b"\r\n..")
    if payload.startswith(b"."):
        payload = b"." + payload
    if not payload.endswith(b"\r\n"):
        payload += b"\r\n"
    conn.send(payload + b".\r\n")
    code, reply = conn.getreply()
    if code != 250:
        raise smtplib.SMTPDataError(code, reply)
    return {}


class SmtpTransport:
    """One reusable SMTP connection; reconnects when the server drops it."""

    def __init__(self, url: str, timeout: float = 30) -> None:
        parts = urlsplit(url)
        if parts.scheme not in {"smtp", "smtp+starttls", "smtps"}:
            raise ConfigError(f"MAIL_URL scheme {parts.scheme!r} is not supported")
        if not parts.hostname:
            raise ConfigError("MAIL_URL needs a host, e.g. smtp://localhost:25")
        self.scheme = parts.scheme
        self.host = parts.hostname
        default_port = {"smtp": 25, "smtp+starttls": 587, "smtps": 465}[parts.scheme]
        self.port = parts.port or default_port
        self.username = unquote(parts.username) if parts.username else None
        self.password = unquote(parts.password) if parts.password else None
        self.timeout = timeout
        self._conn: smtplib.SMTP | None = None

    def _connect(self) -> smtplib.SMTP:
        context = ssl.create_default_context()
        try:
            if self.scheme == "smtps":
                conn: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                conn = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            conn.ehlo()
            if self.scheme == "smtp+starttls":
                conn.starttls(context=context)
                conn.ehlo()
            if self.username:
                conn.login(self.username, self.password or "")
        except smtplib.SMTPAuthenticationError as exc:
            raise PermanentDeliveryError(
                exc.smtp_code, f"login refused: {exc.smtp_error!r}"
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise _error_for(exc.smtp_code, exc.smtp_error) from exc
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryDeliveryError(
                None, f"cannot connect to {self.host}:{self.port}: {exc}"
            ) from exc
        return conn

    def send_bytes(self, envelope_from: str, recipient: str, data: bytes) -> None:
        for attempt in range(2):
            if self._conn is None:
                self._conn = self._connect()
            try:
                refused = _sendmail(self._conn, envelope_from, recipient, data)
            except smtplib.SMTPServerDisconnected as exc:
                # A reused connection the server has since closed: reconnect once.
                self._conn = None
                if attempt == 0:
                    continue
                raise TemporaryDeliveryError(None, f"connection dropped: {exc}") from exc
            except smtplib.SMTPRecipientsRefused as exc:
                code, reply = exc.recipients[recipient]
                self._reset()
                raise _error_for(code, reply) from exc
            except smtplib.SMTPResponseException as exc:
                # Sender refused or DATA refused; the session is still usable after RSET.
                self._reset()
                raise _error_for(exc.smtp_code, exc.smtp_error) from exc
            except (TimeoutError, OSError) as exc:
                self._drop()
                raise TemporaryDeliveryError(None, f"connection error: {exc}") from exc
            if refused:  # pragma: no cover - one recipient per call, refused raises above
                code, reply = refused[recipient]
                raise _error_for(code, reply)
            return

    def _reset(self) -> None:
        if self._conn is None:
            return
        try:
            self._conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    def close(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._conn.quit()
            self._drop()


class OutboxTransport:
    """Development transport: each message becomes an `.eml` file, newest last by name."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def send_bytes(self, envelope_from: str, recipient: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{utcnow():%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex[:8]}.eml"
        tmp = self.directory / (name + ".tmp")
        tmp.write_bytes(data)
        tmp.replace(self.directory / name)  # atomic: the outbox never lists half a file

    def close(self) -> None:
        pass


def transport_from_url(url: str, *, outbox_dir: Path, timeout: float = 30) -> Transport:
    if url == "outbox:" or url.startswith("outbox:"):
        return OutboxTransport(outbox_dir)
    return SmtpTransport(url, timeout=timeout)
