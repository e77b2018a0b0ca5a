"""The one place messages are built.

A message is composed once into a `MessageTemplate`: pre-encoded bytes with named holes
for what differs per recipient (`To`, `Message-ID`, `Date`, links, counts). Sending to a
reader is then string substitution into those bytes, never a re-render: this is what lets
an edition go to a hundred thousand readers cheaply. Transactional emails use the same
path with no body holes.

Both parts are quoted-printable with lines of at most 76 octets (RFC 2045; RFC 5321 allows
998), so no template can produce a line a server refuses, and 8-bit text survives relays
without 8BITMIME. A hole in a body sits between soft line breaks, so the value decodes
into the text exactly where the hole was.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.header import Header
from email.utils import format_datetime, formataddr, make_msgid, parseaddr

from newsletter.db import utcnow

HOLE = re.compile(r"@@([a-z][a-z0-9_:-]*)@@")
QP_LINE = 76
CRLF = "\r\n"

# Per octet: itself when it may stand in quoted-printable as is, else its =XX escape.
_QP = [chr(b) if (33 <= b <= 126 and b != 61) or b in (9, 32) else f"={b:02X}" for b in range(256)]
_QP_PLAIN = re.compile(r"[!-<>-~]*")  # printable ASCII except "=", no spaces


def hole(name: str) -> str:
    """The marker a template writes where a per-recipient value goes."""
    return f"@@{name}@@"


def qp_encode(text: str) -> str:
    """Quoted-printable with CRLF line ends and no line over 76 octets."""
    lines_out: list[str] = []
    for line in text.replace("\r\n", "\n").split("\n"):
        tokens = [_QP[b] for b in line.encode("utf-8")]
        if tokens and tokens[-1] in (" ", "\t"):
            tokens[-1] = f"={ord(tokens[-1]):02X}"  # trailing white space would be lost
        current: list[str] = []
        width = 0
        for token in tokens:
            if width + len(token) > QP_LINE - 1:  # leave room for the soft break "="
                lines_out.append("".join(current) + "=")
                current, width = [], 0
            current.append(token)
            width += len(token)
        lines_out.append("".join(current))
    return "\r\n".join(lines_out)


def _qp_value(value: str) -> bytes:
    """A value for a hole in a body: encoded, then a soft break so the text runs on."""
    if len(value) < QP_LINE and _QP_PLAIN.fullmatch(value):
        return value.encode("ascii") + b"=\r\n"  # the common case: a URL or a number
    return qp_encode(value).encode("ascii") + b"=\r\n"


@dataclass(frozen=True)
class MessageTemplate:
    """Pre-built message bytes with holes. `render` fills them; nothing is re-encoded."""

    chunks: tuple[bytes | tuple[str, bool], ...]  # literal bytes, or (hole name, in body)

    @property
    def holes(self) -> set[str]:
        return {c[0] for c in self.chunks if isinstance(c, tuple)}

    def render(self, values: Mapping[str, str]) -> bytes:
        out: list[bytes] = []
        for chunk in self.chunks:
            if isinstance(chunk, bytes):
                out.append(chunk)
            else:
                name, in_body = chunk
                value = values[name]
                out.append(_qp_value(value) if in_body else value.encode("ascii"))
        return b"".join(out)


def _split(text: str, in_body: bool) -> Iterable[bytes | tuple[str, bool]]:
    """Literal bytes and holes; in a body, each literal before a hole ends in a soft break."""
    parts = HOLE.split(text)
    for i, part in enumerate(parts):
        if i % 2:
            yield (part, in_body)
        elif in_body:
            encoded = qp_encode(part)
            yield (encoded + ("=\r\n" if i + 1 < len(parts) else "\r\n")).encode("ascii")
        elif part:
            yield part.encode("ascii")


def _header(name: str, value: str) -> str:
    """An unstructured header, folded at spaces and RFC 2047-encoded when not ASCII.

    (The legacy `Header` folder round-trips exactly; `policy.SMTP.fold` can move a whole
    long value to a continuation line, which parsers then read with a leading space.)
    """
    charset = "us-ascii" if value.isascii() else "utf-8"
    return f"{name}: {Header(value, charset, header_name=name).encode(linesep=CRLF)}\r\n"


def _from_header(mail_from: str) -> str:
    return f"From: {formataddr(parseaddr(mail_from), charset='utf-8')}\r\n"


def compose(
    *,
    mail_from: str,
    subject: str,
    text: str,
    html: str,
    list_id: str | None = None,
) -> MessageTemplate:
    """A `multipart/alternative` message (text, then HTML) with holes.

    Always-present holes: `to`, `date`, `message_id`; list mail (`list_id` given) adds
    `unsubscribe_url` for `List-Unsubscribe`. Any `@@name@@` in `text` or `html` becomes a
    body hole of that name. `To` must be a plain address (signup only accepts those).
    """
    boundary = f"=_bsd_{uuid.uuid4().hex}"
    headers = [
        _from_header(mail_from),
        f"To: {hole('to')}\r\n",
        _header("Subject", subject),
        f"Date: {hole('date')}\r\n",
        f"Message-ID: {hole('message_id')}\r\n",
        "MIME-Version: 1.0\r\n",
    ]
    if list_id is not None:
        headers += [
            _header("List-Id", list_id),
            f"List-Unsubscribe: <{hole('unsubscribe_url')}>\r\n",
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        ]
    headers.append(f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n')
    part_head = (
        '--{b}\r\nContent-Type: text/{sub}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    chunks: list[bytes | tuple[str, bool]] = []
    chunks += _split("".join(headers), in_body=False)
    chunks.append(part_head.format(b=boundary, sub="plain").encode("ascii"))
    chunks += _split(text, in_body=True)
    chunks.append(part_head.format(b=boundary, sub="html").encode("ascii"))
    chunks += _split(html, in_body=True)
    chunks.append(f"--{boundary}--\r\n".encode("ascii"))
    return MessageTemplate(tuple(_merge(chunks)))


def _merge(chunks: Iterable[bytes | tuple[str, bool]]) -> Iterable[bytes | tuple[str, bool]]:
    """Join neighbouring literal chunks so `render` has fewer pieces to glue."""
    pending: list[bytes] = []
    for chunk in chunks:
        if isinstance(chunk, bytes):
            pending.append(chunk)
            continue
        if pending:
            yield b"".join(pending)
            pending = []
        yield chunk
    if pending:
        yield b"".join(pending)


def sender_domain(mail_from: str) -> str:
    _, addr = parseaddr(mail_from)
    return addr.rpartition("@")[2] or "localhost"


def envelope_sender(mail_from: str) -> str:
    return parseaddr(mail_from)[1]


def new_message_id(mail_from: str) -> str:
    return make_msgid(domain=sender_domain(mail_from))


def stable_message_id(secret: str, mail_from: str, *parts: object) -> str:
    """The same Message-ID every time for the same parts (e.g. edition and reader), so a
    message resent after a crash can be recognised as the twin it is."""
    key = ".".join(str(p) for p in parts)
    digest = hmac.new(secret.encode(), key.encode(), hashlib.sha256).hexdigest()[:16]
    return f"<{key}.{digest}@{sender_domain(mail_from)}>"


def now_header() -> str:
    return format_datetime(utcnow())
