"""Editing an edition before it is sent: reorder or drop its stories, render it again.
Staff call these; they flush, the request commits."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.orm import Session, selectinload

from newsletter.delivery.models import Delivery
from newsletter.editions.assembly import summarize
from newsletter.editions.models import Edition, EditionStatus, EditionStory
from newsletter.editions.rendering import render_variants
from newsletter.errors import InvalidInput, NotFound
from newsletter.stories.coverage import coverage
from newsletter.stories.models import Article, Story


def get_edition(session: Session, edition_id: int) -> Edition:
    """The edition with its stories (their articles and outlets) and variants loaded."""
    edition = session.scalar(
        select(Edition)
        .where(Edition.id == edition_id)
        .options(
            selectinload(Edition.stories)
            .selectinload(EditionStory.story)
            .selectinload(Story.articles)
            .joinedload(Article.outlet),
            selectinload(Edition.variants),
        )
    )
    if edition is None:
        raise NotFound("No such edition.")
    return edition


def stories_editable(session: Session, edition: Edition) -> bool:
    """Whether the stories may still change: before sending starts, or while an edition
    that cannot be composed has reached nobody (its readers wait for the fix)."""
    if not edition.frozen:
        return True
    if edition.compose_error is None:
        return False
    handed_over = session.scalar(
        select(Delivery.id).where(Delivery.edition_id == edition.id, Delivery.attempts > 0).limit(1)
    )
    return handed_over is None


def _require_unsent(session: Session, edition: Edition) -> None:
    if not stories_editable(session, edition):
        raise InvalidInput(
            "Sending has started for this edition: its stories can no longer change."
        )


def set_story_order(session: Session, edition: Edition, story_ids: list[int]) -> None:
    """Keep exactly `story_ids`, in that order (a subset of the edition's stories: the
    missing ones are dropped), then re-render every variant."""
    _require_unsent(session, edition)
    current = {es.story_id: es.story for es in edition.stories}
    if not story_ids:
        raise InvalidInput("An edition needs at least one story.")
    if len(set(story_ids)) != len(story_ids) or not set(story_ids) <= set(current):
        raise InvalidInput("Those stories are not all in this edition.")
    stories = [current[i] for i in story_ids]
    session.execute(delete(EditionStory).where(EditionStory.edition_id == edition.id))
    edition.variants.clear()
    session.flush()
    session.expire(edition, ["stories"])
    for position, story in enumerate(stories):
        session.add(EditionStory(edition_id=edition.id, story_id=story.id, position=position))
    summarize(edition, stories)
    session.flush()
    rerender(session, edition, stories)


def rerender(session: Session, edition: Edition, stories: list[Story] | None = None) -> None:
    """Render the variants again (a story moved or dropped, a template published)."""
    _require_unsent(session, edition)
    if stories is None:
        stories = [es.story for es in edition.stories]
    edition.variants.clear()
    session.flush()
    render_variants(session, edition, [(s, coverage(s)) for s in stories])


def rerender_unsent(session: Session) -> list[Edition]:
    """Every edition not being sent yet, rendered again: after a template is published,
    the next edition uses it even when it was assembled ahead; and every edition that
    could not be composed and has reached nobody, so a rolled-back template lets its
    send resume."""
    editions = [
        edition
        for edition in session.scalars(
            select(Edition).where(
                (Edition.status == EditionStatus.ASSEMBLED) | Edition.compose_error.is_not(None)
            )
        )
        if stories_editable(session, edition)
    ]
    for edition in editions:
        rerender(session, get_edition(session, edition.id))
    return editions


def move_story(session: Session, edition: Edition, story_id: int, step: int) -> None:
    order = [es.story_id for es in edition.stories]
    if story_id not in order:
        raise InvalidInput("That story is not in this edition.")
    i = order.index(story_id)
    j = max(0, min(len(order) - 1, i + step))
    order.insert(j, order.pop(i))
    set_story_order(session, edition, order)


def drop_story(session: Session, edition: Edition, story_id: int) -> None:
    set_story_order(
        session, edition, [es.story_id for es in edition.stories if es.story_id != story_id]
    )
