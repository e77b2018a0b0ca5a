"""Choosing the day's stories and freezing the edition.

Selection, for the edition of a date:
1. Candidates: stories with status published (not candidate or hidden), published in the
   `EDITION_WINDOW_HOURS` (72) before the end of that date (UTC) and not yet in an
   earlier edition (the database enforces "never twice").
2. Score = breadth (distinct outlets, log-scaled: the 20th source adds less than the 2nd)
   + recency (halves every 24 hours) + balance (both sides covering it).
3. Greedy by score into the reading budget: `EDITION_READING_MINUTES` (5) at 238 words a
   minute over an estimate of the words the email shows (`email_words`: each story's
   title twice, for the list at the top, its short overview, each side's headline and
   outlet, the labels; plus a fixed allowance for the header and footer), at most
   `MAX_STORIES`. The reading time the email claims is then counted from the rendered
   output itself (`newsletter.editions.reading`). A story that
   does not fit is skipped for a shorter one below it. The top story always goes in, even
   alone over budget: an edition is never empty because one overview is long.
4. At least one blindspot when a candidate is one: if none made it, the best blindspot
   replaces the lowest-scored picks until it fits.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from flask import current_app
from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload

from newsletter.db import utcnow
from newsletter.editions.models import Edition, EditionStory
from newsletter.editions.reading import WORDS_PER_MINUTE, reading_seconds
from newsletter.editions.rendering import render_variants
from newsletter.errors import NewsletterError
from newsletter.stories.coverage import Coverage, coverage
from newsletter.stories.framing import representatives, short_overview
from newsletter.stories.models import Article, Story, StoryStatus

# The header (date line, plan line, headings) and footer, in words.
HEADER_FOOTER_WORDS = 90
# Per story: the coverage line, bar labels, side labels, "Read both sides".
STORY_LABEL_WORDS = 20
MAX_STORIES = 10
SUBJECT_MAX = 70


class NoStories(NewsletterError):
    """Nothing to send: no edition is made."""


@dataclass(frozen=True)
class Candidate:
    story: Story
    coverage: Coverage
    words: int
    score: float


@dataclass(frozen=True)
class AssemblyResult:
    edition: Edition
    created: bool  # False when an edition already being sent was left as it was


def score(cov: Coverage, published_at: datetime, now: datetime) -> float:
    breadth = 10 * math.log2(1 + cov.source_count)
    age_hours = max(0.0, (now - published_at).total_seconds() / 3600)
    recency = 10 * 0.5 ** (age_hours / 24)
    balance = 5 * (1 - abs(cov.left_pct - cov.right_pct) / 100) if cov.rated_count else 0
    return breadth + recency + balance


def candidates(
    session: Session, day: date, now: datetime, exclude_edition: int | None
) -> list[Candidate]:
    window_hours = int(current_app.config["EDITION_WINDOW_HOURS"])
    # Up to the end of the day, or now when assembling ahead (tomorrow's, for the readers
    # whose morning comes first).
    end = min(datetime.combine(day + timedelta(days=1), time(0), UTC), now)
    start = end - timedelta(hours=window_hours)
    used = select(EditionStory.story_id)
    if exclude_edition is not None:
        used = used.where(EditionStory.edition_id != exclude_edition)
    stories = session.scalars(
        select(Story)
        .where(
            Story.status == StoryStatus.PUBLISHED,
            Story.published_at > start,
            Story.published_at <= end,
            Story.id.not_in(used),
        )
        .options(selectinload(Story.articles).joinedload(Article.outlet))
    ).all()
    found = []
    for story in stories:
        cov = coverage(story)
        found.append(Candidate(story, cov, email_words(story), score(cov, story.published_at, end)))
    return sorted(found, key=lambda c: (-c.score, c.story.id))


def select_stories(found: list[Candidate], budget_words: int) -> list[Candidate]:
    if not found:
        return []
    picked = [found[0]]
    used = HEADER_FOOTER_WORDS + found[0].words
    for cand in found[1:]:
        if len(picked) >= MAX_STORIES:
            break
        if used + cand.words <= budget_words:
            picked.append(cand)
            used += cand.words
    blindspots = [c for c in found if c.coverage.blindspot]
    if blindspots and not any(c.coverage.blindspot for c in picked):
        best = blindspots[0]
        while (
            picked
            and (used + best.words > budget_words or len(picked) >= MAX_STORIES)
            and len(picked) > 1
        ):
            dropped = picked.pop()  # the lowest-scored pick
            used -= dropped.words
        if used + best.words <= budget_words or len(picked) <= 1:
            picked.append(best)
            picked.sort(key=lambda c: (-c.score, c.story.id))
    return picked


def assemble(session: Session, day: date, *, now: datetime | None = None) -> AssemblyResult:
    """Build (or rebuild, while nothing has been sent) the edition for `day` and freeze
    its stories, order and rendered variants."""
    now = now or utcnow()
    edition = session.scalar(select(Edition).where(Edition.date == day))
    if edition is not None and edition.frozen:
        return AssemblyResult(edition, created=False)
    minutes = int(current_app.config["EDITION_READING_MINUTES"])
    found = candidates(session, day, now, edition.id if edition else None)
    picked = select_stories(found, minutes * WORDS_PER_MINUTE)
    if not picked:
        raise NoStories(f"No stories to send for {day.isoformat()}: import some first.")

    if edition is None:
        edition = Edition(date=day, subject="", preheader="", word_count=0, reading_seconds=0)
        session.add(edition)
    else:
        session.execute(delete(EditionStory).where(EditionStory.edition_id == edition.id))
        edition.variants.clear()
        session.flush()
    summarize(edition, [c.story for c in picked])
    edition.assembled_at = now
    session.flush()
    session.expire(edition, ["stories"])
    for position, cand in enumerate(picked):
        session.add(EditionStory(edition_id=edition.id, story_id=cand.story.id, position=position))
    session.flush()
    render_variants(session, edition, [(c.story, c.coverage) for c in picked])
    session.flush()
    return AssemblyResult(edition, created=True)


def email_words(story: Story) -> int:
    """About how many words the email shows for `story` (see step 3 above)."""
    words = 2 * len(story.title.split()) + len(short_overview(story).split())
    for framing in representatives(story):
        words += len(f"{framing.headline or 'No coverage'} {framing.outlet or ''}".split())
    return words + STORY_LABEL_WORDS


def summarize(edition: Edition, stories: Sequence[Story]) -> None:
    """The edition's subject (the top story, "+ N more"), preheader, and estimated word
    count and reading time, from its stories in order (rendering counts the real ones)."""
    words = HEADER_FOOTER_WORDS + sum(email_words(s) for s in stories)
    edition.subject = subject_for([s.title for s in stories])
    edition.preheader = (
        f"How the left, center and right framed {len(stories)} "
        f"{'story' if len(stories) == 1 else 'stories'}"
        + (f". Also: {stories[1].title}" if len(stories) > 1 else ".")
    )[:300]
    edition.word_count = words
    edition.reading_seconds = reading_seconds(words)


def subject_for(titles: Sequence[str]) -> str:
    """The top title and how many more, within SUBJECT_MAX characters (the title is
    shortened at a word when both do not fit)."""
    more = f" + {len(titles) - 1} more" if len(titles) > 1 else ""
    return _shorten(" ".join(titles[0].split()), SUBJECT_MAX - len(more)) + more


def _shorten(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    cut = text[: limit - 1].rsplit(" ", 1)[0] if " " in text[: limit - 1] else text[: limit - 1]
    return cut.rstrip(" ,;:") + "…"
