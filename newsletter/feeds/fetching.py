"""Fetching due feeds into articles: the one way, whoever asks (the worker or
`newsletter feeds fetch`).

A boundary, like a job: the network is read with no transaction open, then each feed's
articles, health and run record are committed in one transaction of its own, so a broken
feed (or a failure storing its items) never touches another feed's. Call inside an app
context.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select

from newsletter import metrics
from newsletter.db import Database, utcnow
from newsletter.feeds.http import FetchError, FetchLimits, fetch
from newsletter.feeds.models import ERROR_MAX, ETAG_MAX, Feed, FeedRun, RunOutcome
from newsletter.feeds.parsing import FeedParseError, parse_feed
from newsletter.stories.ingest import IngestReport, ingest_articles

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchSettings:
    limits: FetchLimits
    interval: timedelta  # between fetches of a healthy feed
    max_backoff: timedelta  # the longest wait after repeated errors

    @classmethod
    def from_config(cls, config: Any) -> FetchSettings:
        return cls(
            FetchLimits(
                timeout=float(config["FEEDS_TIMEOUT_SECONDS"]),
                max_bytes=int(config["FEEDS_MAX_BYTES"]),
                max_redirects=int(config["FEEDS_MAX_REDIRECTS"]),
                allow_private=bool(config["FEEDS_ALLOW_PRIVATE"]),
            ),
            timedelta(minutes=int(config["FEEDS_INTERVAL_MINUTES"])),
            timedelta(hours=int(config["FEEDS_MAX_BACKOFF_HOURS"])),
        )

    def backoff(self, consecutive_errors: int) -> timedelta:
        """interval × 2^errors, capped: 1 error waits 2 intervals, 2 wait 4, …"""
        factor = 2 ** min(consecutive_errors, 20)
        return min(self.interval * factor, self.max_backoff)


@dataclass
class FeedResult:
    feed_id: int
    url: str
    outcome: RunOutcome
    error: str | None = None
    report: IngestReport = field(default_factory=IngestReport)


def due_feed_ids(db: Database, now: datetime) -> list[int]:
    with db.session() as session:
        return list(
            session.scalars(
                select(Feed.id)
                .where(Feed.paused.is_(False), Feed.next_fetch_at <= now)
                .order_by(Feed.next_fetch_at, Feed.id)
            )
        )


# Run records older than this are deleted by each run: the staff pages show a week.
RUNS_KEPT = timedelta(days=30)


def fetch_due(
    db: Database, settings: FetchSettings, now: datetime | None = None
) -> list[FeedResult]:
    now = now or utcnow()
    results = [fetch_feed(db, feed_id, settings, now) for feed_id in due_feed_ids(db, now)]
    with db.session() as session:
        session.execute(delete(FeedRun).where(FeedRun.started_at < now - RUNS_KEPT))
    return results


def fetch_feed(
    db: Database, feed_id: int, settings: FetchSettings, now: datetime | None = None
) -> FeedResult:
    """Fetch one feed (paused or not: asking for it by id is asking for it now)."""
    now = now or utcnow()
    with db.session() as session:
        feed = session.get(Feed, feed_id)
        if feed is None:
            raise LookupError(f"no feed with id {feed_id}")
        url, etag, modified, outlet_id = feed.url, feed.etag, feed.last_modified, feed.outlet_id
    status: int | None = None
    size = 0
    try:
        got = fetch(url, settings.limits, etag=etag, last_modified=modified)
        status, size = got.status, len(got.body)
        if got.status == 304:
            return _record(db, feed_id, settings, now, RunOutcome.NOT_MODIFIED, status=304)
        parsed = parse_feed(
            got.body,
            url=got.url,
            content_type=got.content_type,
            outlet_id=outlet_id,
            feed_id=feed_id,
        )
    except FetchError as exc:
        return _record_error(db, feed_id, settings, now, exc.message, exc.status, exc.bytes_read)
    except FeedParseError as exc:
        return _record_error(db, feed_id, settings, now, exc.message, status, size)
    try:
        with db.session() as session:
            report = ingest_articles(session, parsed.items, now=now)
            result = _update(
                session,
                feed_id,
                settings,
                now,
                RunOutcome.OK,
                status=status,
                size=size,
                report=report,
                error=parsed.warning,
                etag=got.etag,
                modified=got.last_modified,
            )
    except Exception as exc:  # one feed's bad luck storing items must not stop the run
        log.exception("feed %s: storing its articles failed", feed_id)
        return _record_error(
            db, feed_id, settings, now, f"storing its articles failed ({type(exc).__name__})"
        )
    log.info(
        "feed %s: %d items, %d new, %d duplicate, %d clustered, %d new stories",
        feed_id,
        report.fetched,
        report.new,
        report.duplicate,
        report.clustered,
        report.new_stories,
    )
    return result


def _record(
    db: Database,
    feed_id: int,
    settings: FetchSettings,
    now: datetime,
    outcome: RunOutcome,
    **kw: Any,
) -> FeedResult:
    with db.session() as session:
        result = _update(session, feed_id, settings, now, outcome, **kw)
    metrics.FEED_FETCHES.labels(str(outcome.value)).inc()
    return result


def _record_error(
    db: Database,
    feed_id: int,
    settings: FetchSettings,
    now: datetime,
    message: str,
    status: int | None = None,
    size: int = 0,
) -> FeedResult:
    log.warning("feed %s: %s", feed_id, message)
    return _record(
        db, feed_id, settings, now, RunOutcome.ERROR, status=status, size=size, error=message
    )


def _update(
    session: Any,
    feed_id: int,
    settings: FetchSettings,
    now: datetime,
    outcome: RunOutcome,
    *,
    status: int | None = None,
    size: int = 0,
    report: IngestReport | None = None,
    error: str | None = None,
    etag: str | None = None,
    modified: str | None = None,
) -> FeedResult:
    feed = session.get(Feed, feed_id)
    report = report or IngestReport()
    feed.last_fetch_at = now
    if outcome == RunOutcome.ERROR:
        feed.consecutive_errors += 1
        feed.last_error = (error or "failed")[:ERROR_MAX]
        feed.last_error_at = now
        feed.next_fetch_at = now + settings.backoff(feed.consecutive_errors)
    else:
        feed.consecutive_errors = 0
        feed.last_success_at = now
        feed.next_fetch_at = now + settings.interval
        feed.items_seen += report.fetched
        if outcome == RunOutcome.OK:
            # Only what the server sent: a server without validators gets plain GETs.
            feed.etag = etag[:ETAG_MAX] if etag else None
            feed.last_modified = modified[:ETAG_MAX] if modified else None
    session.add(
        FeedRun(
            feed_id=feed_id,
            started_at=now,
            outcome=outcome,
            http_status=status,
            error=error,
            bytes_read=size,
            fetched=report.fetched,
            new=report.new,
            duplicate=report.duplicate,
            clustered=report.clustered,
            new_stories=report.new_stories,
        )
    )
    session.flush()
    return FeedResult(feed_id, feed.url, outcome, error, report)
