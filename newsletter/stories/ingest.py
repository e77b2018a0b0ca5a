"""Articles from the outlets' feeds into stories: the one way feed items enter the product.

`ingest_articles` takes the items a fetch found (plain text already), stores each article
once (by canonical URL, and by feed + GUID), and files the new ones into stories with
`newsletter.stories.clustering`. Running it again on the same items changes nothing.
The service flushes; the caller commits.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from flask import current_app, has_app_context
from sqlalchemy import select, tuple_
from sqlalchemy.orm import Session

from newsletter.db import utcnow
from newsletter.inputs import storable
from newsletter.stories.models import GUID_MAX, HEADLINE_MAX, URL_MAX, Article
from newsletter.stories.urls import BadArticleUrl, canonical_url

if TYPE_CHECKING:  # clustering loads numpy, scikit-learn and datasketch: only when used
    from newsletter.stories.clustering import ClusterSettings

log = logging.getLogger(__name__)

# Rows per IN (...) lookup: well under every backend's parameter limit.
_CHUNK = 500


@dataclass(frozen=True)
class IncomingArticle:
    outlet_id: int
    url: str  # as found in the feed; ingest canonicalises it
    headline: str  # plain text (HTML already stripped by the caller)
    lede: str | None  # plain text
    published_at: datetime | None  # UTC (naive means UTC); None → first seen (now)
    guid: str | None = None  # the feed item's id/guid
    feed_id: int | None = None


@dataclass
class IngestReport:
    fetched: int = 0  # items handed in
    new: int = 0  # stored as new articles
    duplicate: int = 0  # known already: URL, feed + GUID, or the same outlet's copy
    clustered: int = 0  # new articles that joined a story rather than opening one
    new_stories: int = 0  # candidate stories opened


def as_utc(value: datetime) -> datetime:
    """Aware UTC; a naive value is taken to be UTC already."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def ingest_articles(
    session: Session,
    items: Sequence[IncomingArticle],
    *,
    now: datetime | None = None,
    settings: ClusterSettings | None = None,
) -> IngestReport:
    """Store the new articles among `items` and file them into stories.

    An item whose URL is not http(s), or whose headline is empty or cannot be stored, is
    skipped (counted as fetched only) and logged.
    """
    from newsletter.stories.clustering import ClusterSettings, file_articles

    now = as_utc(now) if now is not None else utcnow()
    if settings is None:
        settings = (
            ClusterSettings.from_config(current_app.config)
            if has_app_context()
            else ClusterSettings()
        )
    report = IngestReport(fetched=len(items))
    fresh = _new_articles(session, items, now, report)
    filed = file_articles(session, fresh, settings, now)
    report.new = len(filed.stored)
    report.duplicate += filed.duplicates
    report.clustered = filed.clustered
    report.new_stories = filed.new_stories
    return report


def _new_articles(
    session: Session, items: Sequence[IncomingArticle], now: datetime, report: IngestReport
) -> list[Article]:
    """Articles for the items not seen before (neither in the database nor earlier in
    `items`), not yet added to the session."""
    from newsletter.stories.clustering import fingerprints

    candidates: list[tuple[str, IncomingArticle]] = []
    for item in items:
        try:
            url = canonical_url(item.url)
        except BadArticleUrl as exc:
            log.warning("article skipped: %s", exc)
            continue
        headline = " ".join(item.headline.split())
        if not headline or not storable(headline) or not storable(item.url):
            log.warning("article skipped: no storable headline (%s)", url[:200])
            continue
        if len(url) > URL_MAX or len(item.url) > URL_MAX:
            log.warning("article skipped: URL longer than %d characters", URL_MAX)
            continue
        candidates.append((url, item))

    known_urls = _known_urls(session, [url for url, _ in candidates])
    known_guids = _known_guids(
        session, [(i.feed_id, i.guid) for _, i in candidates if i.feed_id and i.guid]
    )
    fresh: list[Article] = []
    for url, item in candidates:
        guid = item.guid[:GUID_MAX] if item.guid and storable(item.guid) else None
        key = (item.feed_id, guid)
        if url in known_urls or (item.feed_id and guid and key in known_guids):
            report.duplicate += 1
            continue
        known_urls.add(url)
        if item.feed_id and guid:
            known_guids.add(key)
        headline = " ".join(item.headline.split())[:HEADLINE_MAX]
        lede = " ".join(item.lede.split()) if item.lede and storable(item.lede) else None
        published = as_utc(item.published_at) if item.published_at else now
        fresh.append(
            Article(
                outlet_id=item.outlet_id,
                url=item.url.strip(),
                canonical_url=url,
                headline=headline,
                lede=lede or None,
                published_at=min(published, now),
                first_seen_at=now,
                feed_id=item.feed_id,
                guid=guid,
            )
        )
    for article, signature in zip(
        fresh, fingerprints([(a.headline, a.lede) for a in fresh]), strict=True
    ):
        article.fingerprint = signature
    return fresh


def _known_urls(session: Session, urls: list[str]) -> set[str]:
    found: set[str] = set()
    for i in range(0, len(urls), _CHUNK):
        chunk = urls[i : i + _CHUNK]
        found.update(
            u
            for u in session.scalars(
                select(Article.canonical_url).where(Article.canonical_url.in_(chunk))
            )
            if u is not None
        )
    return found


def _known_guids(
    session: Session, keys: list[tuple[int | None, str | None]]
) -> set[tuple[int | None, str | None]]:
    found: set[tuple[int | None, str | None]] = set()
    for i in range(0, len(keys), _CHUNK):
        chunk = keys[i : i + _CHUNK]
        rows = session.execute(
            select(Article.feed_id, Article.guid).where(
                tuple_(Article.feed_id, Article.guid).in_(chunk)
            )
        )
        found.update((feed_id, guid) for feed_id, guid in rows)
    return found
