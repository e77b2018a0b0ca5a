"""Outlets, stories and the articles that tie them together.

Coverage (how much each political side covers a story) is derived from the articles on
demand, never stored: see `newsletter.stories.coverage`.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, ForeignKey, Index, LargeBinary, String, Text, UniqueConstraint, func
from sqlalchemy.orm import Mapped, mapped_column, relationship

from newsletter.db import Base, str_enum, utcnow

SLUG_MAX = 80
URL_MAX = 2000
TITLE_MAX = 300
OVERVIEW_MAX = 5000
SUMMARY_MAX = 2000
ANALYSIS_MAX = 5000
HEADLINE_MAX = 500
EXTERNAL_ID_MAX = 200
OUTLET_NAME_MAX = 200
GUID_MAX = 500
RATING_SET_BY_MAX = 254


class Bias(StrEnum):
    """An outlet's rating on the 7-point scale, or unrated."""

    FAR_LEFT = "far_left"
    LEFT = "left"
    LEAN_LEFT = "lean_left"
    CENTER = "center"
    LEAN_RIGHT = "lean_right"
    RIGHT = "right"
    FAR_RIGHT = "far_right"
    UNRATED = "unrated"


class Factuality(StrEnum):
    VERY_HIGH = "very_high"
    HIGH = "high"
    MOSTLY_FACTUAL = "mostly_factual"
    MIXED = "mixed"
    LOW = "low"
    VERY_LOW = "very_low"
    UNRATED = "unrated"


class RatingSource(StrEnum):
    """Who set an outlet's bias and factuality: staff (the staff area or a stories import)
    or a ratings file (`newsletter outlets ratings import`). A staff rating is never
    overwritten by a ratings file."""

    STAFF = "staff"
    RATINGS_FILE = "ratings_file"


class StoryStatus(StrEnum):
    """Where a story is in review: only published stories go into editions."""

    CANDIDATE = "candidate"  # opened by clustering, waiting for staff (or auto-publish)
    PUBLISHED = "published"
    HIDDEN = "hidden"  # staff said no; clustering still files matching articles here


class Outlet(Base):
    __tablename__ = "outlets"

    id: Mapped[int] = mapped_column(primary_key=True)
    slug: Mapped[str] = mapped_column(String(SLUG_MAX), unique=True)
    name: Mapped[str] = mapped_column(String(OUTLET_NAME_MAX))
    url: Mapped[str | None] = mapped_column(String(URL_MAX))
    bias: Mapped[Bias] = mapped_column(str_enum(Bias), default=Bias.UNRATED)
    factuality: Mapped[Factuality] = mapped_column(str_enum(Factuality), default=Factuality.UNRATED)
    # None while never rated; `rating_set_by` says by whom (staff email, file name).
    rating_source: Mapped[RatingSource | None] = mapped_column(str_enum(RatingSource))
    rating_set_by: Mapped[str | None] = mapped_column(String(RATING_SET_BY_MAX))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

    def __repr__(self) -> str:
        return f"<Outlet {self.slug} {self.bias}>"


class Story(Base):
    __tablename__ = "stories"

    id: Mapped[int] = mapped_column(primary_key=True)
    # The importer's own id: re-importing the same external_id updates the story.
    external_id: Mapped[str] = mapped_column(String(EXTERNAL_ID_MAX), unique=True)
    # Appears in links already sent by email, so it never changes unless an import says so.
    slug: Mapped[str] = mapped_column(String(SLUG_MAX), unique=True)
    title: Mapped[str] = mapped_column(String(TITLE_MAX))
    overview: Mapped[str] = mapped_column(Text)
    # The ~50-word version the email shows; None: the overview cut at a sentence.
    summary: Mapped[str | None] = mapped_column(Text)
    # None means "Analysis unavailable for this viewpoint".
    analysis_left: Mapped[str | None] = mapped_column(Text)
    analysis_center: Mapped[str | None] = mapped_column(Text)
    analysis_right: Mapped[str | None] = mapped_column(Text)
    # [{"question": ..., "answer": ...}, ...]
    faq: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    topics: Mapped[list[str]] = mapped_column(JSON, default=list)
    # Given by the import, else the time of the newest article: what "recent" means.
    published_at: Mapped[datetime] = mapped_column(index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Imported stories are published as they arrive; clustering opens candidates.
    status: Mapped[StoryStatus] = mapped_column(
        str_enum(StoryStatus), default=StoryStatus.PUBLISHED, server_default="published"
    )
    # Set when staff edit the title or overview: clustering no longer rewrites them.
    edited_at: Mapped[datetime | None]

    articles: Mapped[list[Article]] = relationship(
        back_populates="story", order_by="Article.id", cascade="all, delete-orphan"
    )

    def __repr__(self) -> str:
        return f"<Story {self.id} {self.slug}>"


class Article(Base):
    __tablename__ = "articles"
    __table_args__ = (
        UniqueConstraint("story_id", "url"),
        UniqueConstraint("feed_id", "guid"),
        Index("ix_articles_published_at", "published_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    story_id: Mapped[int] = mapped_column(ForeignKey("stories.id", ondelete="CASCADE"))
    # RESTRICT: an outlet with articles cannot vanish from under a story's coverage.
    outlet_id: Mapped[int] = mapped_column(
        ForeignKey("outlets.id", ondelete="RESTRICT"), index=True
    )
    url: Mapped[str] = mapped_column(String(URL_MAX))
    headline: Mapped[str] = mapped_column(String(HEADLINE_MAX))
    published_at: Mapped[datetime | None]
    lede: Mapped[str | None] = mapped_column(Text)
    # Set for articles that came in through ingest (imported ones leave it empty, as an
    # import may list one URL under two stories): an article is stored once per URL.
    canonical_url: Mapped[str | None] = mapped_column(String(URL_MAX), unique=True)
    # The feed item's id, unique within its feed. The feed is referred to by id only.
    feed_id: Mapped[int | None]
    guid: Mapped[str | None] = mapped_column(String(GUID_MAX))
    first_seen_at: Mapped[datetime] = mapped_column(default=utcnow, server_default=func.now())
    # MinHash signature of the headline and lede's word shingles, for near-duplicates.
    fingerprint: Mapped[bytes | None] = mapped_column(LargeBinary)

    story: Mapped[Story] = relationship(back_populates="articles")
    outlet: Mapped[Outlet] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return f"<Article {self.id} {self.url}>"
