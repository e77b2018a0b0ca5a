"""A fetched feed's bytes into `IncomingArticle`s: feedparser for RSS 0.9x/1.0/2.0 and
Atom, nh3 (a real HTML sanitizer) for the text."""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin

import feedparser
import nh3

from newsletter.stories.ingest import IncomingArticle

LEDE_MAX = 2000
_BLOCK_TAG = re.compile(
    r"</?(?:br|p|div|li|ul|ol|h[1-6]|tr|td|th|table|blockquote|hr|section|article)\b", re.I
)
# feedparser's complaints that still leave a usable document behind.
_HARMLESS = (feedparser.CharacterEncodingOverride, feedparser.NonXMLContentType)


class FeedParseError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(frozen=True)
class ParsedFeed:
    version: str  # "rss20", "rss10", "atom10", …
    items: list[IncomingArticle]
    entries: int  # entries in the document, usable or not
    warning: str | None  # the document was not well-formed but items were recovered


def plain_text(fragment: str | None, limit: int | None = None) -> str:
    """HTML (or text) to one line of plain text: tags dropped by nh3 (script and style
    content with them), entities decoded once, whitespace collapsed."""
    if not fragment:
        return ""
    # A space before each block tag, so "end.</p><p>Next" and "a<br>b" keep their words
    # apart once nh3 has removed the tags (inline tags like <b> join as they are).
    spaced = _BLOCK_TAG.sub(r" \g<0>", fragment)
    cleaned = nh3.clean(spaced, tags=set(), attributes={}, strip_comments=True)
    # Control and format characters go; whitespace of any kind becomes single spaces.
    text = "".join(ch for ch in html.unescape(cleaned) if ch.isprintable() or ch.isspace())
    text = " ".join(text.split())
    if limit is not None and len(text) > limit:
        cut = text[:limit].rsplit(" ", 1)[0] or text[:limit]
        text = cut.rstrip() + "…"
    return text


def _published(entry: Any) -> datetime | None:
    for key in ("published_parsed", "updated_parsed", "created_parsed"):
        value = entry.get(key)
        if isinstance(value, time.struct_time):
            try:
                return datetime(*value[:6], tzinfo=UTC).replace(tzinfo=None)
            except (ValueError, OverflowError):
                continue
    return None


def _lede(entry: Any) -> str:
    summary = entry.get("summary") or ""
    if not summary:
        for content in entry.get("content") or []:
            if content.get("value"):
                summary = content["value"]
                break
    return plain_text(summary, LEDE_MAX)


def is_web_page(body: bytes, content_type: str) -> bool:
    head = body[:2048].lstrip().lower()
    return "text/html" in content_type.lower() or head.startswith((b"<!doctype html", b"<html"))


def parse_feed(
    body: bytes, *, url: str, content_type: str, outlet_id: int, feed_id: int | None
) -> ParsedFeed:
    document = feedparser.parse(
        body, response_headers={"content-location": url, "content-type": content_type}
    )
    problem = document.get("bozo_exception") if document.get("bozo") else None
    if problem is not None and isinstance(problem, _HARMLESS):
        problem = None
    version = document.get("version") or ""
    entries = list(document.get("entries") or [])
    if not version and not entries:
        if is_web_page(body, content_type):
            raise FeedParseError("the address returned a web page (HTML), not an RSS or Atom feed")
        if problem is not None:
            raise FeedParseError(f"not a well-formed RSS or Atom feed ({_words(problem)})")
        raise FeedParseError("not an RSS or Atom feed")
    items: list[IncomingArticle] = []
    for entry in entries:
        link = (entry.get("link") or "").strip()
        headline = plain_text(entry.get("title"))
        if not link or not headline:
            continue
        guid = (entry.get("id") or "").strip() or None
        items.append(
            IncomingArticle(
                outlet_id=outlet_id,
                url=urljoin(url, link),
                headline=headline,
                lede=_lede(entry) or None,
                published_at=_published(entry),
                guid=guid,
                feed_id=feed_id,
            )
        )
    if problem is not None and not items:
        raise FeedParseError(f"not a well-formed RSS or Atom feed ({_words(problem)})")
    warning = f"not well-formed ({_words(problem)}); items recovered" if problem else None
    return ParsedFeed(version or "unknown", items, len(entries), warning)


def _words(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text.replace("<unknown>:", "line ").strip()[:200]
