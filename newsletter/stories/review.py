"""Staff review of stories: the queue, merge, split, edit, publish and hide.

A story in an edition never loses an article (merging it away or splitting it would
change what readers were sent); it can still gain some, and be edited or hidden. Any
staff change to a story's articles or text sets `edited_at`, after which clustering
neither rewrites its title and overview nor merges it away on its own.
The service flushes; the caller commits (and audits).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from newsletter.db import utcnow
from newsletter.editions.models import EditionStory
from newsletter.errors import InvalidInput
from newsletter.inputs import storable
from newsletter.stories.coverage import Coverage, coverage
from newsletter.stories.importing import slugify, unique_slug
from newsletter.stories.models import (
    ANALYSIS_MAX,
    OVERVIEW_MAX,
    TITLE_MAX,
    Article,
    Story,
    StoryStatus,
)

QUEUE_LIMIT = 100


class StoryNotFound(InvalidInput):
    """No story has that id."""


@dataclass(frozen=True)
class QueueEntry:
    story: Story
    coverage: Coverage
    outlets: int


def queue(
    session: Session, status: StoryStatus = StoryStatus.CANDIDATE, limit: int = QUEUE_LIMIT
) -> list[QueueEntry]:
    """Stories in `status`, newest first, with their articles, outlets and coverage."""
    stories = session.scalars(
        select(Story)
        .where(Story.status == status)
        .order_by(Story.published_at.desc(), Story.id.desc())
        .limit(limit)
        .options(selectinload(Story.articles).joinedload(Article.outlet))
    ).all()
    return [QueueEntry(s, coverage(s), len({a.outlet_id for a in s.articles})) for s in stories]


def count_by_status(session: Session) -> dict[StoryStatus, int]:
    rows = session.execute(select(Story.status, func.count()).group_by(Story.status))
    found = dict.fromkeys(StoryStatus, 0)
    found.update({status: n for status, n in rows})
    return found


def get_story(session: Session, story_id: int) -> Story:
    story = session.get(Story, story_id)
    if story is None:
        raise StoryNotFound(f"There is no story {story_id}.")
    return story


def in_edition(session: Session, story_id: int) -> bool:
    return (
        session.scalar(select(EditionStory.id).where(EditionStory.story_id == story_id)) is not None
    )


def publicly_readable(session: Session, story: Story) -> bool:
    """A story page is public once the story is published, or once an edition carried it
    (its readers' links keep working if staff hide it later); a candidate is not."""
    return story.status == StoryStatus.PUBLISHED or in_edition(session, story.id)


def _must_be_free(session: Session, story: Story, doing: str) -> None:
    if in_edition(session, story.id):
        raise InvalidInput(
            f"Story {story.id} is in an edition already, so it keeps its articles: "
            f"it cannot be {doing}."
        )


def merge(session: Session, into: Story, others: Sequence[int], now: datetime | None = None) -> int:
    """Move every article of the stories `others` into `into` and delete them. Returns the
    number of articles moved. A story in an edition cannot be merged away."""
    now = now or utcnow()
    ids = sorted(set(others) - {into.id})
    if not ids:
        raise InvalidInput("Choose at least one other story to merge into this one.")
    moved = 0
    stories = [get_story(session, i) for i in ids]
    for other in stories:
        _must_be_free(session, other, "merged into another")
    known = {a.url for a in into.articles}
    for other in stories:
        for article in list(other.articles):
            if article.url in known:  # the same link twice in one story says nothing more
                other.articles.remove(article)
                continue
            known.add(article.url)
            article.story = into
            moved += 1
        session.flush()
        session.delete(other)
    _touch(into, now)
    into.published_at = max([into.published_at, *_times(into)])
    session.flush()
    return moved


def split(
    session: Session,
    story: Story,
    article_ids: Sequence[int],
    into: int | None = None,
    now: datetime | None = None,
) -> Story:
    """Move the articles `article_ids` of `story` to the story `into`, or to a new
    candidate story titled after the first of them. Returns the story they went to."""
    now = now or utcnow()
    _must_be_free(session, story, "split")
    chosen = [a for a in story.articles if a.id in set(article_ids)]
    if not chosen or len(chosen) != len(set(article_ids)):
        raise InvalidInput("Choose one or more of this story's articles to move.")
    if len(chosen) == len(story.articles):
        raise InvalidInput(
            "A split leaves at least one article behind: to move them all, merge instead."
        )
    if into is not None:
        if into == story.id:
            raise InvalidInput("Choose another story to move the articles to.")
        target = get_story(session, into)
    else:
        from newsletter.stories.clustering import new_external_id

        lead = chosen[0]
        target = Story(
            external_id=new_external_id(
                f"{lead.canonical_url or lead.url} split {now.isoformat()}"
            ),
            slug=unique_slug(session, slugify(lead.headline)),
            title=lead.headline[:TITLE_MAX],
            overview=(lead.lede or lead.headline)[:OVERVIEW_MAX],
            status=StoryStatus.CANDIDATE,
            published_at=max(_times(chosen)) if _times(chosen) else story.published_at,
            created_at=now,
            updated_at=now,
        )
        session.add(target)
    known = {a.url for a in target.articles}
    for article in chosen:
        if article.url in known:
            story.articles.remove(article)
            continue
        article.story = target
    _touch(story, now)
    _touch(target, now)
    session.flush()
    target.published_at = max([target.published_at, *_times(target)])
    session.flush()
    return target


def edit(
    session: Session,
    story: Story,
    *,
    title: str,
    overview: str,
    analysis_left: str | None,
    analysis_center: str | None,
    analysis_right: str | None,
    now: datetime | None = None,
) -> None:
    """Staff's own title, overview and per-side analysis (empty analysis: unavailable)."""
    title = " ".join(title.split())
    overview = overview.strip()
    if not title:
        raise InvalidInput("The title cannot be empty.")
    if not overview:
        raise InvalidInput("The overview cannot be empty.")
    if len(title) > TITLE_MAX:
        raise InvalidInput(f"The title is longer than {TITLE_MAX} characters.")
    if len(overview) > OVERVIEW_MAX:
        raise InvalidInput(f"The overview is longer than {OVERVIEW_MAX} characters.")
    analyses = {}
    for side, text in (
        ("left", analysis_left),
        ("center", analysis_center),
        ("right", analysis_right),
    ):
        value = (text or "").strip() or None
        if value is not None and len(value) > ANALYSIS_MAX:
            raise InvalidInput(f"The {side} analysis is longer than {ANALYSIS_MAX} characters.")
        analyses[side] = value
    if not all(storable(t) for t in (title, overview, *(v or "" for v in analyses.values()))):
        raise InvalidInput("The text holds characters that cannot be stored.")
    story.title = title
    story.overview = overview
    story.analysis_left = analyses["left"]
    story.analysis_center = analyses["center"]
    story.analysis_right = analyses["right"]
    _touch(story, now or utcnow())
    session.flush()


def set_status(
    session: Session, story: Story, status: StoryStatus, now: datetime | None = None
) -> None:
    """Publish (a candidate for the next editions) or hide a story, or send it back to
    the queue."""
    story.status = status
    story.updated_at = now or utcnow()
    session.flush()


def is_clustered(story: Story) -> bool:
    """Whether clustering opened the story (else it was imported)."""
    from newsletter.stories.clustering import EXTERNAL_ID_PREFIX

    return story.external_id.startswith(EXTERNAL_ID_PREFIX)


def _touch(story: Story, now: datetime) -> None:
    story.edited_at = now
    story.updated_at = now


def _times(articles: Story | Sequence[Article]) -> list[datetime]:
    rows = articles.articles if isinstance(articles, Story) else articles
    return [a.published_at for a in rows if a.published_at is not None]
