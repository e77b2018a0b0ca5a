"""Rendering an edition: once per plan variant, with holes for each reader's values.

The holes (`newsletter.mail.message.Hole`) are:
- `link_<story id>`: the reader's tracked link to that story (`BASE_URL/r/<token>`)
- `free_left` (free variant): the reader's free stories left this month
- `trial_days_left` (trial variant)
- `unsubscribe_url`, plus the headers every message has (`to`, `date`, `message_id`)

How a hole gets through Jinja, MJML and the CSS inliner: the template's context holds, for
each, a marker made of a random 128-bit token drawn for this one rendering, after the
stories exist (and checked to be in none of their text); the markers are taken out of the
output at once and each hole's place is stored as an offset beside the text
(`EditionVariant.html_holes`, `text_holes`). No story, template or reader can write a token
nobody has drawn yet, so no text can make, remove or move a hole; past this point holes
are structure, never text, and nothing scans for them again.

An edition that cannot be rendered is recorded on the edition (`compose_error`, shown to
staff, logged once) instead of raising: e.g. a story whose text every template version
fails on (MJML refuses control characters), or a published template that puts a
per-reader value in the subject (a subject is the same for every reader). Its readers stay
queued; dropping the story or rolling the template back renders it again and clears it.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Sequence
from typing import Any

from flask import current_app
from sqlalchemy.orm import Session

from newsletter.billing.entitlement import Plan
from newsletter.db import utcnow
from newsletter.editions.models import Edition, EditionVariant
from newsletter.errors import NewsletterError
from newsletter.mail.message import Hole, Piece, holes_of
from newsletter.mail.render import TemplateRenderError, default_sources, render_sources
from newsletter.mail.sending import common_context
from newsletter.mail.templates.store import published_number, render_for_send
from newsletter.stories.coverage import Coverage
from newsletter.stories.models import Story

SIDE_COLORS = {"left": "#2c5ea8", "center": "#8a8a8a", "right": "#b3261e"}
log = logging.getLogger(__name__)


class CannotCompose(NewsletterError):
    """An edition's messages cannot be built; the message says which story or template."""


class Markers:
    """The hole markers of one rendering: `{token}name{token}`, with a token no text
    holds (see the module docstring)."""

    def __init__(self, texts: Sequence[str]) -> None:
        token = secrets.token_hex(16)
        while any(token in t for t in texts):  # cannot happen in practice; cheap to rule out
            token = secrets.token_hex(16)
        self.token = token
        self._found = re.compile(f"{token}([a-z0-9_]+){token}")

    def hole(self, name: str) -> str:
        return f"{self.token}{name}{self.token}"

    def take(self, output: str) -> tuple[str, list[list[Any]]]:
        """`output` without its markers, and `[offset, name]` for each hole."""
        pieces: list[Piece] = []
        at = 0
        for match in self._found.finditer(output):
            pieces += [output[at : match.start()], Hole(match.group(1))]
            at = match.end()
        pieces.append(output[at:])
        return holes_of(pieces)

    def used_in(self, output: str) -> list[str]:
        return self._found.findall(output)


def link_hole(story_id: int) -> str:
    return f"link_{story_id}"


def story_context(story: Story, cov: Coverage, link: str) -> dict[str, Any]:
    """What the edition template is given for one story; `link` is where it points."""
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
        "link": link,
    }


def edition_context(
    edition: Edition, items: Sequence[tuple[Story, Coverage]], plan: Plan, markers: Markers
) -> dict[str, Any]:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    cfg = app.config
    return {
        **common_context(app),
        "subject": edition.subject,
        "preheader": edition.preheader,
        "date_label": f"{edition.date:%A, %B} {edition.date.day}",
        "reading_minutes": max(1, round(edition.reading_seconds / 60)),
        "stories": [story_context(s, c, markers.hole(link_hole(s.id))) for s, c in items],
        "plan": plan.value,
        "free_left": markers.hole("free_left"),
        "free_per_month": cfg["FREE_STORIES_PER_MONTH"],
        "trial_days_left": markers.hole("trial_days_left"),
        "account_url": cfg["BASE_URL"] + "/account",
        "unsubscribe_url": markers.hole("unsubscribe_url"),
    }


def render_variants(
    session: Session, edition: Edition, items: Sequence[tuple[Story, Coverage]]
) -> None:
    """Compile MJML and inline CSS once per plan; store the results on the edition.

    The template is the published version (see `newsletter.mail.templates.store`); should it
    fail, every variant falls back to the last version that rendered well and the
    failure is recorded against this edition for staff to see: the edition still goes.
    When nothing renders, the edition is left without variants and the cause recorded
    (`compose_error`); a later rendering that works clears it.
    """
    try:
        variants = _render(session, edition, items)
    except CannotCompose as exc:
        note_compose_error(edition, exc.message)
    else:
        edition.variants.extend(variants)
        note_compose_error(edition, None)
    session.flush()


def note_compose_error(edition: Edition, message: str | None) -> None:
    """Record why `edition` cannot be composed (None: it can now). Logged only when the
    cause changes: the worker's every-minute run does not repeat it."""
    if message == edition.compose_error:
        return
    if message is None:
        log.info("edition of %s can be composed again", edition.date)
    else:
        log.error("edition of %s cannot be composed: %s", edition.date, message)
    edition.compose_error = message
    edition.compose_error_at = None if message is None else utcnow()


def _render(
    session: Session, edition: Edition, items: Sequence[tuple[Story, Coverage]]
) -> list[EditionVariant]:
    texts = [edition.subject, edition.preheader]
    for story, _ in items:
        texts += [story.title, story.overview]
    markers = Markers(texts)
    plans = list(Plan)
    contexts = [edition_context(edition, items, plan, markers) for plan in plans]
    try:
        rendered = render_for_send(session, "edition", contexts, edition_id=edition.id)
    except TemplateRenderError as exc:
        raise CannotCompose(_why_not(edition, items, markers, exc)) from exc
    variants = []
    for plan, email in zip(plans, rendered, strict=True):
        in_subject = markers.used_in(email.subject)
        if in_subject:
            number = published_number(session, "edition")
            version = f"version {number}" if number else "the files"
            raise CannotCompose(
                f"the subject of the edition template ({version}) uses a per-reader value "
                f"({', '.join(sorted(set(in_subject)))}), but a subject is the same for "
                "every reader: roll the template back or take it out of the subject"
            )
        html, html_holes = markers.take(email.html)
        text, text_holes = markers.take(email.text)
        variants.append(
            EditionVariant(
                plan=plan,
                subject=email.subject,
                html=html,
                html_holes=html_holes,
                text=text,
                text_holes=text_holes,
            )
        )
    return variants


def _why_not(
    edition: Edition,
    items: Sequence[tuple[Story, Coverage]],
    markers: Markers,
    error: TemplateRenderError,
) -> str:
    """Every template version failed, the files' included: the edition's own text is the
    cause. Name the stories that fail on their own (rendered alone, from the files)."""
    sources = default_sources("edition")
    culprits = []
    for story, cov in items:
        # Alone means the edition's subject too: it is made of the top stories' titles.
        context = {**edition_context(edition, [(story, cov)], Plan.PAID, markers)}
        context["subject"] = story.title
        try:
            render_sources("edition", sources, context)
        except TemplateRenderError as exc:
            culprits.append(f"story {story.id} “{_visible(story.title)}” ({exc.message})")
    every = "every version of the edition template fails on"
    if culprits:
        return f"{'; '.join(culprits)}: {every} it, the files' included; drop it"
    return f"{error.message}: {every} these stories, the files' included"


def _visible(text: str) -> str:
    """`text` with the characters a terminal or page would hide written as escapes."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)
