"""The one place messages are built.

A message is composed once into a `MessageTemplate`: pre-encoded bytes with named holes
for what differs per recipient (`To`, `Message-ID`, `Date`, links, counts). Sending to a
reader is then string substitution into those bytes, never a re-render: this is what lets
an edition go to a hundred thousand readers cheaply. Transactional emails use the same
path with no body holes.

Holes are structure, never text. A body is given as a sequence of literal strings and
`Hole`s (`Body`); `compose` encodes each literal on its own and records each hole's place
as it builds the message, so nothing is ever scanned for a marker. Whatever a subject, a
story, a template or a reader's value contains (`@@to@@`, `=?utf-8?q?…?=`, `=3D`, CR/LF),
it is encoded as text: it cannot create, remove or shift a hole.

Both parts are quoted-printable with lines of at most 76 octets (RFC 2045; RFC 5321 allows
998), so no template can produce a line a server refuses, and 8-bit text survives relays
without 8BITMIME. A hole in a body sits between soft line breaks, so the value decodes
into the text exactly where the hole was. A header hole takes one line of ASCII (an
address, a date, a URL); anything else is refused (`ValueError`) rather than written into
the header block.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from functools import lru_cache
from typing import Any

from newsletter.db import utcnow

QP_LINE = 76
CRLF = "\r\n"

# Per octet: itself when it may stand in quoted-printable as is, else its =XX escape.
_QP = [chr(b) if (33 <= b <= 126 and b != 61) or b in (9, 32) else f"={b:02X}" for b in range(256)]
# Printable ASCII except "=", no spaces: the octets that stand for themselves anywhere.
_QP_PLAIN_BYTES = bytes(b for b in range(33, 127) if b != 61)


@dataclass(frozen=True, slots=True)
class Hole:
    """Where a per-recipient value goes. Only code makes one: no text ever becomes one."""

    name: str


Piece = str | Hole
Body = tuple[Piece, ...]  # literal text and holes, in order


def body_of(pieces: str | Sequence[Piece]) -> Body:
    """`pieces` with neighbouring literals joined and empty ones dropped (a plain string is
    one literal)."""
    if isinstance(pieces, str):
        return (pieces,) if pieces else ()
    out: list[Piece] = []
    for piece in pieces:
        if isinstance(piece, Hole):
            out.append(piece)
        elif piece:
            if out and isinstance(out[-1], str):
                out[-1] += piece
            else:
                out.append(piece)
    return tuple(out)


def body_at(text: str, holes: Sequence[Sequence[Any]]) -> Body:
    """The body whose literal text is `text` with a hole at each `(offset, name)` of
    `holes` (offsets into `text`, ascending): how a stored variant keeps its holes."""
    pieces: list[Piece] = []
    start = 0
    for offset, name in holes:
        pieces += [text[start:offset], Hole(name)]
        start = offset
    pieces.append(text[start:])
    return body_of(pieces)


def holes_of(body: Sequence[Piece]) -> tuple[str, list[list[Any]]]:
    """`body_at`'s inverse: the literal text, and `[offset, name]` for each hole."""
    text: list[str] = []
    holes: list[list[Any]] = []
    size = 0
    for piece in body:
        if isinstance(piece, Hole):
            holes.append([size, piece.name])
        else:
            text.append(piece)
            size += len(piece)
    return "".join(text), holes


def fill_body(body: Sequence[Piece], values: Mapping[str, str]) -> str:
    """The body as text with each hole replaced by its value, or left out when `values`
    has none (previews)."""
    return "".join(p if isinstance(p, str) else values.get(p.name, "") for p in body)


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
        missing; ValueError if a header value is not one line of ASCII). This runs once
        per recipient: a list copy, one encoding per distinct value, one join."""
        out = self._parts.copy()
        for name, in_body, positions in self._slots:
            value = values[name]
            if in_body:
                data = _qp_value(value)
            else:
                data = value.encode("ascii")  # UnicodeEncodeError is a ValueError
                if b"\r" in data or b"\n" in data:
                    raise ValueError(f"{name}: a header value must be one line")
            for i in positions:
                out[i] = data
        return b"".join(out)


def _body(pieces: str | Sequence[Piece]) -> Iterable[bytes | tuple[str, bool]]:
    """A body part's chunks: each literal encoded on its own, ending in a soft break when
    a hole follows; the part always ends with a literal's line end."""
    body = body_of(pieces)
    for i, piece in enumerate(body):
        if isinstance(piece, Hole):
            yield (piece.name, True)
            continue
        more = i + 1 < len(body)  # literals are joined, so what follows is a hole
        yield (qp_encode(piece) + ("=\r\n" if more else "\r\n")).encode("ascii")
    if not body or isinstance(body[-1], Hole):
        yield b"\r\n"


def _needs_encoded_words(value: str) -> bool:
    """Whether an unstructured header must be RFC 2047-encoded to read back as written:
    non-ASCII or control characters, text a parser would take for an encoded word, or a
    word too long to fold."""
    return (
        not value.isascii()
        or "=?" in value
        or not value.isprintable()
        or any(len(word) > 60 for word in value.split(" "))
    )


def _header(name: str, value: str) -> str:
    """An unstructured header, folded at spaces and RFC 2047-encoded when it must be.

    A header is one line: runs of white space (line breaks included) become one space.
    (The legacy `Header` folder round-trips exactly; `policy.SMTP.fold` can move a whole
    long value to a continuation line, which parsers then read with a leading space.)
    """
    value = " ".join(value.split())
    charset = "utf-8" if _needs_encoded_words(value) else "us-ascii"
    return f"{name}: {Header(value, charset, header_name=name).encode(linesep=CRLF)}\r\n"


def _from_header(mail_from: str) -> str:
    return f"From: {formataddr(parseaddr(mail_from), charset='utf-8')}\r\n"


def compose(
    *,
    mail_from: str,
    subject: str,
    text: str | Sequence[Piece],
    html: str | Sequence[Piece],
    list_id: str | None = None,
    feedback_id: str | None = None,
) -> MessageTemplate:
    """A `multipart/alternative` message (text, then HTML) with holes.

    Always-present holes: `to`, `date`, `message_id`; list mail (`list_id` given) adds
    `unsubscribe_url` for `List-Unsubscribe`. The body holes are the `Hole`s in `text`
    and `html`; every string is literal text, whatever it contains. `To` must be a plain
    address (signup only accepts those).
    """
    boundary = f"=_bsd_{uuid.uuid4().hex}"
    chunks: list[bytes | tuple[str, bool]] = [
        _from_header(mail_from).encode("ascii"),
        b"To: ",
        ("to", False),
        b"\r\n",
        _header("Subject", subject).encode("ascii"),
        b"Date: ",
        ("date", False),
        b"\r\nMessage-ID: ",
        ("message_id", False),
        b"\r\nMIME-Version: 1.0\r\n",
    ]
    if list_id is not None:
        chunks += [
            _header("List-Id", list_id).encode("ascii"),
            b"List-Unsubscribe: <",
            ("unsubscribe_url", False),
            b">\r\nList-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n",
        ]
    if feedback_id is not None:
        chunks.append(f"Feedback-ID: {feedback_id}\r\n".encode("ascii"))
    chunks.append(f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n\r\n'.encode())
    part_head = (
        '--{b}\r\nContent-Type: text/{sub}; charset="utf-8"\r\n'
        "Content-Transfer-Encoding: quoted-printable\r\n\r\n"
    )
    chunks.append(part_head.format(b=boundary, sub="plain").encode("ascii"))
    chunks += _body(text)
    chunks.append(part_head.format(b=boundary, sub="html").encode("ascii"))
    chunks += _body(html)
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


def _feedback_field(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", value).strip("-")[:40] or "x"


def feedback_id(campaign: str, variant: str, list_id: str, sender_id: str) -> str:
    """Gmail's feedback-loop header value, `campaign:variant:list:sender` (its
    CampaignId:CustomerId:MailTypeId:SenderId): complaint rates per edition and plan show
    in Postmaster Tools. Each field is kept to letters, digits, `.`, `_`, `-`; the list
    is LIST_ID's id (the part in angle brackets) when it has one."""
    inner = re.search(r"<([^<>]+)>", list_id)
    fields = (campaign, variant, inner.group(1) if inner else list_id, sender_id)
    return ":".join(_feedback_field(f) for f in fields)


def sender_domain(mail_from: str) -> str:
    _, addr = parseaddr(mail_from)
    return addr.rpartition("@")[2] or "localhost"


@lru_cache(maxsize=8)
def envelope_sender(mail_from: str) -> str:
    return parseaddr(mail_from)[1]


def now_header() -> str:
    return format_datetime(utcnow())
