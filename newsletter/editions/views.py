"""The public archive (`/editions`) and each edition's web version (`/editions/<date>`).

Only editions that went out (sending or sent) are public: the one assembled ahead for
tomorrow stays private until its first reader's turn comes.
"""

from __future__ import annotations

import math

from flask import Blueprint, current_app, render_template, request
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from newsletter.db import db_session
from newsletter.editions.models import Edition, EditionStatus, EditionStory
from newsletter.editions.rendering import CannotCompose, web_version
from newsletter.errors import InvalidInput, NotFound
from newsletter.inputs import parse_day, parse_id
from newsletter.stories.models import Article, Story

bp = Blueprint("editions", __name__)
PER_PAGE = 20
PUBLIC = (EditionStatus.SENDING, EditionStatus.SENT)
# Email HTML in a page of its own: its inline styles, no scripts, nothing framed.
WEB_VERSION_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: https: http:; "
    "frame-ancestors 'none'; form-action 'none'; base-uri 'none'"
)


@bp.get("/editions")
def archive():  # type: ignore[no-untyped-def]
    raw = request.args.get("page", "1")
    page = parse_id(raw, "The page") if raw else 1
    if page < 1:
        raise InvalidInput("The page must be a whole number from 1.")
    session = db_session()
    total = session.scalar(select(func.count()).where(Edition.status.in_(PUBLIC))) or 0
    pages = max(1, math.ceil(total / PER_PAGE))
    if page > pages:
        raise NotFound(f"There is no page {page}: the archive has {pages}.")
    editions = session.scalars(
        select(Edition)
        .where(Edition.status.in_(PUBLIC))
        .order_by(Edition.date.desc())
        .offset((page - 1) * PER_PAGE)
        .limit(PER_PAGE)
        .options(selectinload(Edition.stories))
    ).all()
    return render_template("editions.html", editions=editions, page=page, pages=pages, total=total)


@bp.get("/editions/<day>")
def web(day: str):  # type: ignore[no-untyped-def]
    when = parse_day(day)
    session = db_session()
    edition = session.scalar(
        select(Edition)
        .where(Edition.date == when, Edition.status.in_(PUBLIC))
        .options(
            selectinload(Edition.stories)
            .joinedload(EditionStory.story)
            .selectinload(Story.articles)
            .joinedload(Article.outlet)
        )
    )
    if edition is None:
        raise NotFound(f"There is no edition of {when.isoformat()}.")
    try:
        html = web_version(session, edition)
    except CannotCompose as exc:
        session.rollback()
        current_app.logger.error("web version of %s: %s", when, exc.message)
        raise NotFound(f"The edition of {when.isoformat()} cannot be shown right now.") from exc
    session.commit()  # the template store's bookkeeping (the last version that rendered)
    response = current_app.response_class(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = WEB_VERSION_CSP
    response.headers["Cache-Control"] = "public, max-age=300"
    return response
