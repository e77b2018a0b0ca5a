"""Rendering an edition: once per plan variant, with holes for each reader's values.

The holes (`@@name@@`, see `newsletter.mail.message`) are:
- `link_<story id>`: the reader's tracked link to that story (`BASE_URL/r/<token>`)
- `free_left` (free variant): the reader's free stories left this month
- `trial_days_left` (trial variant)
- `unsubscribe_url`, plus the headers every message has (`to`, `date`, `message_id`)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from flask import current_app
from sqlalchemy.orm import Session

from newsletter.billing.entitlement import Plan
from newsletter.editions.models import Edition, EditionVariant
from newsletter.mail.message import hole
from newsletter.mail.sending import common_context
from newsletter.stories.coverage import Coverage
from newsletter.stories.models import Story

SIDE_COLORS = {"left": "#2c5ea8", "center": "#8a8a8a", "right": "#b3261e"}


def link_hole(story_id: int) -> str:
    return f"link_{story_id}"


def story_context(story: Story, cov: Coverage) -> dict[str, Any]:
    bar = [
        {"side": side, "pct": pct, "color": SIDE_COLORS[side], "label": f"{side[0].upper()} {pct}%"}
        for side, pct in (
            ("left", cov.left_pct),
            ("center", cov.center_pct),
            ("right", cov.right_pct),
        )
        if pct > 0
    ]
    return {
        "id": story.id,
        "title": story.title,
        "overview": story.overview,
        "source_count": cov.source_count,
        "left_pct": cov.left_pct,
        "center_pct": cov.center_pct,
        "right_pct": cov.right_pct,
        "bar": bar,
        "blindspot": cov.blindspot.value if cov.blindspot else None,
        "link": hole(link_hole(story.id)),
    }


def edition_context(
    edition: Edition, items: Sequence[tuple[Story, Coverage]], plan: Plan
) -> dict[str, Any]:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    cfg = app.config
    return {
        **common_context(app),
        "subject": edition.subject,
        "preheader": edition.preheader,
        "date_label": f"{edition.date:%A, %B} {edition.date.day}",
        "reading_minutes": max(1, round(edition.reading_seconds / 60)),
        "stories": [story_context(s, c) for s, c in items],
        "plan": plan.value,
        "free_left": hole("free_left"),
        "free_per_month": cfg["FREE_STORIES_PER_MONTH"],
        "trial_days_left": hole("trial_days_left"),
        "account_url": cfg["BASE_URL"] + "/account",
        "unsubscribe_url": hole("unsubscribe_url"),
    }


def render_variants(
    session: Session, edition: Edition, items: Sequence[tuple[Story, Coverage]]
) -> None:
    """Compile MJML and inline CSS once per plan; store the results on the edition.

    The template is the published version (see `newsletter.admin.templates`); should it
    fail, every variant falls back to the last version that rendered well and the
    failure is recorded against this edition for staff to see: the edition still goes.
    """
    from newsletter.admin.templates import render_for_send

    plans = list(Plan)
    contexts = [edition_context(edition, items, plan) for plan in plans]
    for plan, rendered in zip(
        plans, render_for_send(session, "edition", contexts, edition_id=edition.id), strict=True
    ):
        edition.variants.append(
            EditionVariant(
                plan=plan, subject=rendered.subject, html=rendered.html, text=rendered.text
            )
        )
    session.flush()
