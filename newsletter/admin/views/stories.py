"""`/admin/stories/…`: the review queue; merge, split, edit, publish and hide stories."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for

from newsletter.admin import services
from newsletter.admin.views.blueprint import bp, current_staff
from newsletter.db import db_session
from newsletter.errors import InvalidInput
from newsletter.inputs import parse_id
from newsletter.stories import review
from newsletter.stories.coverage import coverage
from newsletter.stories.models import StoryStatus
from newsletter.web import id_param

_STATUS_ACTIONS = {
    "publish": StoryStatus.PUBLISHED,
    "hide": StoryStatus.HIDDEN,
    "queue": StoryStatus.CANDIDATE,
}


@bp.get("/stories")
def stories():  # type: ignore[no-untyped-def]
    session = db_session()
    try:
        status = StoryStatus(request.args.get("status", StoryStatus.CANDIDATE.value))
    except ValueError:
        abort(400, "Choose candidate, published or hidden.")
    return render_template(
        "admin/stories.html",
        entries=review.queue(session, status),
        status=status,
        counts=review.count_by_status(session),
        statuses=list(StoryStatus),
    )


@bp.get("/stories/<int:story_id>")
def story(story_id: int):  # type: ignore[no-untyped-def]
    session = db_session()
    found = _get(story_id)
    return render_template(
        "admin/story.html",
        story=found,
        coverage=coverage(found),
        locked=review.in_edition(session, found.id),
        clustered=review.is_clustered(found),
    )


@bp.post("/stories/<int:story_id>")
def story_edit(story_id: int):  # type: ignore[no-untyped-def]
    session = db_session()
    found = _get(story_id)
    form = request.form
    try:
        review.edit(
            session,
            found,
            title=form.get("title", ""),
            overview=form.get("overview", ""),
            analysis_left=form.get("analysis_left"),
            analysis_center=form.get("analysis_center"),
            analysis_right=form.get("analysis_right"),
        )
    except InvalidInput as exc:
        session.rollback()
        flash(exc.message, "error")
        return _story_page(story_id)
    services.audit(session, current_staff(), "story.edit", f"story {story_id}")
    session.commit()
    flash("Saved.", "ok")
    return _story_page(story_id)


@bp.post("/stories/<int:story_id>/status")
def story_status(story_id: int):  # type: ignore[no-untyped-def]
    session = db_session()
    found = _get(story_id)
    action = request.form.get("action", "")
    if action not in _STATUS_ACTIONS:
        flash("Choose publish, hide or back to the queue.", "error")
        return _story_page(story_id)
    review.set_status(session, found, _STATUS_ACTIONS[action])
    services.audit(session, current_staff(), f"story.{action}", f"story {story_id}", found.title)
    session.commit()
    flash(f"Story {story_id} is now {found.status.value}.", "ok")
    return _story_page(story_id)


@bp.post("/stories/<int:story_id>/merge")
def story_merge(story_id: int):  # type: ignore[no-untyped-def]
    session = db_session()
    found = _get(story_id)
    try:
        others = _ids(request.form.get("story_ids", ""))
        moved = review.merge(session, found, others)
    except InvalidInput as exc:
        session.rollback()
        flash(exc.message, "error")
        return _story_page(story_id)
    services.audit(
        session,
        current_staff(),
        "story.merge",
        f"story {story_id}",
        "merged stories " + ", ".join(map(str, sorted(set(others) - {story_id}))),
    )
    session.commit()
    flash(f"Merged: {moved} articles moved into this story.", "ok")
    return _story_page(story_id)


@bp.post("/stories/<int:story_id>/split")
def story_split(story_id: int):  # type: ignore[no-untyped-def]
    session = db_session()
    found = _get(story_id)
    try:
        article_ids = [parse_id(v, "Each article") for v in request.form.getlist("article_id")]
        into = id_param(request.form, "into")
        target = review.split(session, found, article_ids, into)
    except InvalidInput as exc:
        session.rollback()
        flash(exc.message, "error")
        return _story_page(story_id)
    services.audit(
        session,
        current_staff(),
        "story.split",
        f"story {story_id}",
        f"articles {', '.join(map(str, sorted(article_ids)))} to story {target.id}",
    )
    session.commit()
    flash(f"Moved {len(article_ids)} articles to story {target.id}.", "ok")
    return _story_page(story_id)


def _get(story_id: int):  # type: ignore[no-untyped-def]
    try:
        return review.get_story(db_session(), story_id)
    except review.StoryNotFound:
        abort(404)


def _ids(raw: str) -> list[int]:
    parts = [p for p in raw.replace(",", " ").split() if p]
    if len(parts) > 50:
        raise InvalidInput("Merge at most 50 stories at a time.")
    return [parse_id(p, "Each story id") for p in parts]


def _story_page(story_id: int):  # type: ignore[no-untyped-def]
    """Back to the story's page after a form, where the flashed message shows."""
    return redirect(url_for("admin.story", story_id=story_id), 303)
