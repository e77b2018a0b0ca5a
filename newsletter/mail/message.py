"""The one place messages are built.

Both parts are quoted-printable, so no body line exceeds 76 octets whatever the template
does (RFC 5321 allows 998), and 8-bit text survives relays without 8BITMIME.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid, parseaddr

from newsletter.db import utcnow


@dataclass(frozen=True)
class ListHeaders:
    """Headers every list email carries (RFC 2369, RFC 2919, RFC 8058)."""

    list_id: str
    unsubscribe_url: str


def sender_domain(mail_from: str) -> str:
    _, addr = parseaddr(mail_from)
    return addr.rpartition("@")[2] or "localhost"


def envelope_sender(mail_from: str) -> str:
    return parseaddr(mail_from)[1]


def build_message(
    *,
    mail_from: str,
    to: str,
    subject: str,
    text: str,
    html: str,
    list_headers: ListHeaders | None = None,
    message_id: str | None = None,
    extra_headers: dict[str, str] | None = None,
) -> EmailMessage:
    msg = EmailMessage(policy=SMTP)
    msg["From"] = mail_from
    msg["To"] = Address(addr_spec=to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = message_id or make_msgid(domain=sender_domain(mail_from))
    if list_headers is not None:
        msg["List-Id"] = list_headers.list_id
        msg["List-Unsubscribe"] = f"<{list_headers.unsubscribe_url}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    msg.set_content(text, subtype="plain", cte="quoted-printable")
    msg.add_alternative(html, subtype="html", cte="quoted-printable")
    return msg
