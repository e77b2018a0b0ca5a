"""Feed use cases for staff and the CLI: add, edit, pause, list, health. They flush; the
caller commits."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.db import utcnow
from newsletter.errors import InvalidInput, NotFound
from newsletter.feeds.models import Feed, FeedRun
from newsletter.inputs import storable
from newsletter.stories.models import (
    OUTLET_NAME_MAX,
    SLUG_MAX,
    URL_MAX,
    Bias,
    Factuality,
    Outlet,
    RatingSource,
)

_SLUG = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
HEALTH_DAYS = 7


def valid_feed_url(raw: str) -> str:
    url = raw.strip()
    if not url or len(url) > URL_MAX or not storable(url) or not url.isascii():
        raise InvalidInput(
            f"The feed address must be an ASCII http:// or https:// URL of at most {URL_MAX} "
            "characters."
        )
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        raise InvalidInput("The feed address is not a valid URL.") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidInput("The feed address must start with http:// or https:// and name a host.")
    if parts.username or parts.password:
        raise InvalidInput("The feed address must not hold a user name or password.")
    return url


def outlet_by_slug(session: Session, slug: str) -> Outlet | None:
    return session.scalar(select(Outlet).where(Outlet.slug == slug.strip().lower()))


def add_feed(
    session: Session, outlet_slug: str, url: str, *, outlet_name: str | None = None
) -> tuple[Feed, bool]:
    """A new feed for the outlet `outlet_slug`, making the outlet (unrated) when there is
    none by that slug. Returns the feed and whether the outlet was made."""
    url = valid_feed_url(url)
    slug = outlet_slug.strip().lower()
    if session.scalar(select(Feed.id).where(Feed.url == url)) is not None:
        raise InvalidInput(f"The feed {url} is already added.")
    outlet = outlet_by_slug(session, slug)
    created = outlet is None
    if outlet is None:
        if not _SLUG.fullmatch(slug) or len(slug) > SLUG_MAX:
            raise InvalidInput(
                "The outlet must be a slug: lower-case letters, digits and single hyphens, "
                f"at most {SLUG_MAX} characters."
            )
        name = " ".join((outlet_name or slug.replace("-", " ").title()).split())
        if not name or len(name) > OUTLET_NAME_MAX or not storable(name):
            raise InvalidInput(f"The outlet name must be 1 to {OUTLET_NAME_MAX} characters.")
        host = urlsplit(url).hostname or ""
        outlet = Outlet(slug=slug, name=name, url=f"https://{host}/")
        session.add(outlet)
        session.flush()
    feed = Feed(outlet_id=outlet.id, url=url, next_fetch_at=utcnow())
    session.add(feed)
    session.flush()
    return feed, created


def get_feed(session: Session, feed_id: int) -> Feed:
    feed = session.get(Feed, feed_id)
    if feed is None:
        raise NotFound(f"No feed with id {feed_id}.")
    return feed


def update_feed(session: Session, feed: Feed, url: str) -> None:
    """A new address: the conditional-GET state and backoff start over."""
    url = valid_feed_url(url)
    if url == feed.url:
        return
    if session.scalar(select(Feed.id).where(Feed.url == url, Feed.id != feed.id)) is not None:
        raise InvalidInput(f"The feed {url} is already added.")
    feed.url = url
    feed.etag = feed.last_modified = None
    feed.consecutive_errors = 0
    feed.next_fetch_at = utcnow()
    session.flush()


def set_paused(session: Session, feed: Feed, paused: bool) -> None:
    feed.paused = paused
    if not paused:  # resuming: fetch at the next run, not after the old backoff
        feed.next_fetch_at = utcnow()
    session.flush()


def set_staff_rating(
    session: Session, outlet: Outlet, bias: str, factuality: str, staff_email: str
) -> None:
    """Staff's own rating: from now on a ratings file leaves this outlet alone."""
    try:
        outlet.bias, outlet.factuality = Bias(bias), Factuality(factuality)
    except ValueError:
        raise InvalidInput("Choose a bias and a factuality from the lists.") from None
    outlet.rating_source = RatingSource.STAFF
    outlet.rating_set_by = staff_email
    outlet.updated_at = utcnow()
    session.flush()


def list_feeds(session: Session) -> list[Feed]:
    return list(session.scalars(select(Feed).order_by(Feed.outlet_id, Feed.id)))


@dataclass(frozen=True)
class FeedHealth:
    feed: Feed
    items_per_day: float  # new articles a day over the last HEALTH_DAYS days
    errors: int  # failed fetches over the last HEALTH_DAYS days
    runs: int


def health(session: Session, feeds: list[Feed], now: datetime | None = None) -> list[FeedHealth]:
    since = (now or utcnow()) - timedelta(days=HEALTH_DAYS)
    ids = [f.id for f in feeds]
    stats: dict[int, tuple[int, int, int]] = {}
    if ids:
        rows = session.execute(
            select(
                FeedRun.feed_id,
                func.coalesce(func.sum(FeedRun.new), 0),
                func.count().filter(FeedRun.outcome == "error"),
                func.count(),
            )
            .where(FeedRun.feed_id.in_(ids), FeedRun.started_at >= since)
            .group_by(FeedRun.feed_id)
        )
        stats = {feed_id: (int(new), int(errors), int(n)) for feed_id, new, errors, n in rows}
    return [
        FeedHealth(
            f,
            round(stats.get(f.id, (0, 0, 0))[0] / HEALTH_DAYS, 1),
            stats.get(f.id, (0, 0, 0))[1],
            stats.get(f.id, (0, 0, 0))[2],
        )
        for f in feeds
    ]


def recent_runs(session: Session, feed_id: int, limit: int = 30) -> list[FeedRun]:
    return list(
        session.scalars(
            select(FeedRun)
            .where(FeedRun.feed_id == feed_id)
            .order_by(FeedRun.started_at.desc(), FeedRun.id.desc())
            .limit(limit)
        )
    )
