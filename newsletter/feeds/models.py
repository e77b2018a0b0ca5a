"""An outlet's RSS/Atom feeds, their health, and a record of every fetch."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from newsletter.db import Base, str_enum, utcnow
from newsletter.stories.models import URL_MAX, Outlet

ETAG_MAX = 500
ERROR_MAX = 500


class Feed(Base):
    __tablename__ = "feeds"

    id: Mapped[int] = mapped_column(primary_key=True)
    outlet_id: Mapped[int] = mapped_column(ForeignKey("outlets.id", ondelete="CASCADE"), index=True)
    url: Mapped[str] = mapped_column(String(URL_MAX), unique=True)
    paused: Mapped[bool] = mapped_column(default=False)
    # Conditional GET: what the server said last time, sent back so a 304 costs nothing.
    etag: Mapped[str | None] = mapped_column(String(ETAG_MAX))
    last_modified: Mapped[str | None] = mapped_column(String(ETAG_MAX))
    # When the feed is due; pushed out exponentially while it keeps failing.
    next_fetch_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    consecutive_errors: Mapped[int] = mapped_column(default=0)
    last_fetch_at: Mapped[datetime | None]
    last_success_at: Mapped[datetime | None]
    # In plain words, for staff: "timed out after 20 seconds", "returned a web page".
    last_error: Mapped[str | None] = mapped_column(String(ERROR_MAX))
    last_error_at: Mapped[datetime | None]
    items_seen: Mapped[int] = mapped_column(default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    outlet: Mapped[Outlet] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return f"<Feed {self.id} {self.url}>"


class RunOutcome(StrEnum):
    OK = "ok"
    NOT_MODIFIED = "not_modified"
    ERROR = "error"


class FeedRun(Base):
    """One fetch of one feed: what came back and what ingest made of it."""

    __tablename__ = "feed_runs"
    __table_args__ = (Index("ix_feed_runs_feed_id_started_at", "feed_id", "started_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    feed_id: Mapped[int] = mapped_column(ForeignKey("feeds.id", ondelete="CASCADE"))
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    outcome: Mapped[RunOutcome] = mapped_column(str_enum(RunOutcome))
    http_status: Mapped[int | None]
    error: Mapped[str | None] = mapped_column(Text)
    bytes_read: Mapped[int] = mapped_column(Integer, default=0)
    fetched: Mapped[int] = mapped_column(default=0)
    new: Mapped[int] = mapped_column(default=0)
    duplicate: Mapped[int] = mapped_column(default=0)
    clustered: Mapped[int] = mapped_column(default=0)
    new_stories: Mapped[int] = mapped_column(default=0)
