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
from dataclasses import dataclass, field
from email.header import Header
from email.utils import format_datetime, formataddr, make_msgid, parseaddr

from newsletter.db import utcnow

HOLE = re.compile(r"@@([a-z][a-z0-9_:-]*)@@")
QP_LINE = 76
CRLF = "\r\n"

# Per octet: itself when it may stand in quoted-printable as is, else its =XX escape.
_QP = [chr(b) if (33 <= b <= 126 and b != 61) or b in (9, 32) else f"={b:02X}" for b in range(256)]
# Printable ASCII except "=", no spaces: the octets that stand for themselves anywhere.
_QP_PLAIN_BYTES = bytes(b for b in range(33, 127) if b != 61)


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
    if value.isascii():
        data = value.encode("ascii")
        if not data.translate(None, _QP_PLAIN_BYTES):
            # The common case (a URL, a number): printable ASCII with nothing to escape.
            # Its quoted-printable form is the value itself, cut every 75 characters by a
            # soft break (75 + "=" = 76 octets): exactly what `qp_encode` would produce.
            if len(data) < QP_LINE:
                return data + b"=\r\n"
            step = QP_LINE - 1
            lines = [data[i : i + step] for i in range(0, len(data), step)]
            return b"=\r\n".join(lines) + b"=\r\n"
    return qp_encode(value).encode("ascii") + b"=\r\n"


@dataclass(frozen=True)
class MessageTemplate:
    """Pre-built message bytes with holes. `render` fills them; nothing is re-encoded."""

    chunks: tuple[bytes | tuple[str, bool], ...]  # literal bytes, or (hole name, in body)
    # Derived once from `chunks` for `render`: the chunks with b"" where each hole goes,
    # and per (name, in body) the positions it fills. A value used several times (a story
    # link sits in the text part and twice in the HTML) is encoded once per message.
    _parts: list[bytes] = field(init=False, repr=False, compare=False)
    _slots: tuple[tuple[str, bool, tuple[int, ...]], ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        parts: list[bytes] = []
        positions: dict[tuple[str, bool], list[int]] = {}
        for chunk in self.chunks:
            if isinstance(chunk, tuple):
                positions.setdefault(chunk, []).append(len(parts))
                parts.append(b"")
            else:
                parts.append(chunk)
        slots = tuple((name, in_body, tuple(at)) for (name, in_body), at in positions.items())
        object.__setattr__(self, "_parts", parts)  # frozen dataclass: set once, here
        object.__setattr__(self, "_slots", slots)

    @property
    def holes(self) -> set[str]:
        return {c[0] for c in self.chunks if isinstance(c, tuple)}

    def render(self, values: Mapping[str, str]) -> bytes:
        """The message bytes with every hole filled from `values` (KeyError if one is
        missing). This runs once per recipient: a list copy, one encoding per distinct
        value, one join."""
        out = self._parts.copy()
        for name, in_body, positions in self._slots:
            value = values[name]
            data = _qp_value(value) if in_body else value.encode("ascii")
            for i in positions:
                out[i] = data
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


class MessageIds:
    """Stable Message-IDs for many messages sharing leading parts (e.g. an edition): the
    same as `stable_message_id(secret, mail_from, *prefix, *rest)`, with the HMAC key
    and the sender's domain worked out once rather than per message."""

    def __init__(self, secret: str, mail_from: str, *prefix: object) -> None:
        self._mac = hmac.new(secret.encode(), digestmod=hashlib.sha256)
        self._prefix = tuple(str(p) for p in prefix)
        self._domain = sender_domain(mail_from)

    def make(self, *rest: object) -> str:
        key = ".".join((*self._prefix, *(str(p) for p in rest)))
        mac = self._mac.copy()
        mac.update(key.encode())
        return f"<{key}.{mac.hexdigest()[:16]}@{self._domain}>"


def stable_message_id(secret: str, mail_from: str, *parts: object) -> str:
    """The same Message-ID every time for the same parts (e.g. edition and reader), so a
    message resent after a crash can be recognised as the twin it is."""
    return MessageIds(secret, mail_from).make(*parts)


def now_header() -> str:
    return format_datetime(utcnow())
