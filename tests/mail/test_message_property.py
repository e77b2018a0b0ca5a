"""The message composer, for any text: holes come only from `Hole`s, never from text.

Whatever a subject, a body or a reader's value contains (`@@name@@` markers, `=`, encoded
words, CR/LF, long lines, non-ASCII), the message parses with Python's `email` package
without defects, keeps quoted-printable lines within 76 octets, and shows the text as
written: in each piece, line breaks (CRLF or LF) stay line breaks and everything else is
kept as is; a subject is one line, its runs of white space one space.
"""

from __future__ import annotations

from email import policy
from email.parser import BytesParser

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from newsletter.mail.message import Hole, compose, now_header
from tests.mail.test_mail import check_wire_format

# Marker-shaped and encoding-shaped fragments, mixed with any text a database can hold.
TRICKY = st.sampled_from(
    [
        "@@",
        "@@to@@",
        "@@promo@@",
        "@@unsubscribe_url@@",
        "@@link_1@@",
        "@@v0@@",
        "=",
        "=3D",
        "=\r\n",
        "=?utf-8?q?x?=",
        "\r\n",
        "\n",
        "\r",
        " ",
        "\t",
        "--",
        "é",
        "日本",
        "x" * 90,
        "é" * 60,
    ]
)
ANY = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=12)
TEXT = st.lists(TRICKY | ANY, max_size=12).map("".join)
NAMES = st.sampled_from(["v0", "v1", "link_1", "free_left"])
# Header values: one line of ASCII, as an address and a URL are.
ATOM = st.text(st.sampled_from("abcxyz019.-_+"), min_size=1, max_size=20).filter(
    lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s
)
ADDRESS = st.builds(lambda local, domain: f"{local}@{domain}.test", ATOM, ATOM)
URL = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="<>"), max_size=80
)


@st.composite
def bodies(draw: st.DrawFn) -> list[str | Hole]:
    return draw(st.lists(TEXT | NAMES.map(Hole), max_size=8))


def expected(pieces: list[str | Hole], values: dict[str, str]) -> str:
    return "".join(
        (values[p.name] if isinstance(p, Hole) else p).replace("\r\n", "\n") for p in pieces
    )


def decoded(message, kind: str) -> str:  # type: ignore[no-untyped-def]
    return message.get_body((kind,)).get_content().replace("\r\n", "\n")


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(
    subject=TEXT,
    text=bodies(),
    html=bodies(),
    values=st.fixed_dictionaries({name: TEXT for name in ("v0", "v1", "link_1", "free_left")}),
    to=ADDRESS,
    unsubscribe=URL,
)
def test_any_text_is_shown_as_written_and_never_becomes_a_hole(
    subject: str,
    text: list[str | Hole],
    html: list[str | Hole],
    values: dict[str, str],
    to: str,
    unsubscribe: str,
) -> None:
    template = compose(
        mail_from="Both Sides Daily <daily@b.test>",
        subject=subject,
        text=text,
        html=html,
        list_id="Both Sides Daily <daily.b.test>",
    )
    assert template.holes == {"to", "date", "message_id", "unsubscribe_url"} | {
        p.name for p in [*text, *html] if isinstance(p, Hole)
    }
    data = template.render(
        {
            **values,
            "to": to,
            "date": now_header(),
            "message_id": "<1.2@b.test>",
            "unsubscribe_url": unsubscribe,
        }
    )

    check_wire_format(data)
    head, _, body = data.partition(b"\r\n\r\n")
    assert max(len(line) for line in body.split(b"\r\n")) <= 76
    message = BytesParser(policy=policy.default).parsebytes(data)
    for part in message.walk():
        assert not part.defects, part.defects
    assert str(message["Subject"]) == " ".join(subject.split())
    assert message["To"] == to
    assert message["List-Unsubscribe"] == f"<{unsubscribe}>"
    assert decoded(message, "plain") == expected(text, values)
    assert decoded(message, "html") == expected(html, values)


@pytest.mark.parametrize("bad", ["a@b.test\r\nBcc: x@y.test", "a@b.test\n", "ü@b.test"])
def test_a_header_value_that_is_not_one_ascii_line_is_refused(bad: str) -> None:
    template = compose(mail_from="a@b.test", subject="s", text="t", html="h")
    with pytest.raises(ValueError):
        template.render({"to": bad, "date": now_header(), "message_id": "<1@b>"})
