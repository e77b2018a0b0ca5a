"""Reading time from what the reader actually sees: the words of the rendered email.

One count for both parts: the HTML's visible text (not the head, styles, comments or
anything hidden with display:none, such as the preheader) and the text part as it is,
each split into words; a link's address is not a word anyone reads, so a URL counts as
none. The edition's claimed reading time is computed from this count of its own
rendered output (see `newsletter.editions.rendering`).
"""

from __future__ import annotations

import math
import re
from html.parser import HTMLParser

WORDS_PER_MINUTE = 238

_VOID = {
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source",
    "track", "wbr",
}  # fmt: skip
_UNSEEN = {"head", "style", "script", "title", "template"}
_HIDDEN_STYLE = re.compile(r"display\s*:\s*none", re.IGNORECASE)
_WORDLIKE = re.compile(r"\w")
_URL = re.compile(r"^(?:https?://|mailto:)", re.IGNORECASE)


class _Visible(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._stack: list[bool] = []  # per open element: is its content unseen?

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID:
            self.parts.append(" ")
            return
        hidden = tag in _UNSEEN or any(
            name == "style" and value and _HIDDEN_STYLE.search(value) for name, value in attrs
        )
        self._stack.append(hidden or (bool(self._stack) and self._stack[-1]))
        self.parts.append(" ")

    def handle_endtag(self, tag: str) -> None:
        if tag in _VOID:
            return
        if self._stack:
            self._stack.pop()
        self.parts.append(" ")

    def handle_data(self, data: str) -> None:
        if not (self._stack and self._stack[-1]):
            self.parts.append(data)


def visible_text(html: str) -> str:
    """The text a mail client shows for `html`."""
    parser = _Visible()
    parser.feed(html)
    parser.close()
    return "".join(parser.parts)


def count_words(text: str) -> int:
    """Words in plain text: runs of non-space holding a letter or digit, URLs left out."""
    return sum(1 for w in text.split() if _WORDLIKE.search(w) and not _URL.match(w))


def html_words(html: str) -> int:
    return count_words(visible_text(html))


def reading_minutes(words: int) -> int:
    """The whole minutes `words` take at WORDS_PER_MINUTE, rounded, at least 1."""
    return max(1, math.floor(words / WORDS_PER_MINUTE + 0.5))


def reading_seconds(words: int) -> int:
    return math.ceil(words * 60 / WORDS_PER_MINUTE)
