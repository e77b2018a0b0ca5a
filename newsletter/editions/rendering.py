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
from datetime import date
from typing import Any

from flask import current_app
from sqlalchemy.orm import Session

from newsletter.billing.entitlement import Plan
from newsletter.billing.gateway import configured as billing_configured
from newsletter.db import utcnow
from newsletter.editions.models import Edition, EditionVariant
from newsletter.editions.reading import count_words, html_words, reading_minutes, reading_seconds
from newsletter.errors import NewsletterError
from newsletter.mail.message import Hole, Piece, holes_of
from newsletter.mail.render import TemplateRenderError, default_sources, render_sources
from newsletter.mail.sending import common_context
from newsletter.mail.templates.store import published_number, render_for_send
from newsletter.stories.coverage import Coverage
from newsletter.stories.framing import representatives, short_overview
from newsletter.stories.models import Story
from newsletter.stories.presentation import SIDE_LABELS

# Mid-tone colours that keep white text readable and stay visible on a dark background.
SIDE_COLORS = {"left": "#2c5ea8", "center": "#6b6b6b", "right": "#b3261e"}
WEB = "web"  # the variant of the public web version
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


# Not a per-reader hole: filled in right after rendering, from that output's own words.
READING_MINUTES = "reading_minutes"


def _plural(n: int, one: str, many: str | None = None) -> str:
    return f"{n} {one if n == 1 else (many or one + 's')}"


def blindspot_note(cov: Coverage) -> str | None:
    """One line saying why a story is a blindspot, with the counts behind it."""
    if cov.blindspot is None:
        return None
    side = cov.blindspot.value
    few = cov.count(side)
    of = f"of the {cov.rated_count} rated outlets covering it"
    if few == 0:
        return f"Blindspot for the {side}: none {of} leans {side}."
    return f"Blindspot for the {side}: only {few} {of} {'leans' if few == 1 else 'lean'} {side}."


def story_context(story: Story, cov: Coverage, link: str, number: int = 1) -> dict[str, Any]:
    """What the edition template is given for one story; `link` is where it points and
    `number` its place in the edition (1 for the top story)."""
    bar = [
        {"side": side, "pct": pct, "color": SIDE_COLORS[side], "label": f"{side[0].upper()} {pct}%"}
        for side, pct in (
            ("left", cov.left_pct),
            ("center", cov.center_pct),
            ("right", cov.right_pct),
        )
        if pct > 0
    ]
    unrated = cov.source_count - cov.rated_count
    counts = (
        f"{_plural(cov.source_count, 'outlet')} covered it: "
        f"{cov.left} left, {cov.center} center, {cov.right} right"
        + (f", {unrated} unrated" if unrated else "")
    )
    framing = [
        {
            "side": f.side.value,
            "label": SIDE_LABELS[f.side],
            "color": SIDE_COLORS[f.side.value],
            "headline": f.headline,
            "outlet": f.outlet,
        }
        for f in representatives(story)
    ]
    return {
        "id": story.id,
        "number": number,
        "anchor": f"story-{number}",
        "title": story.title,
        "summary": short_overview(story),
        "overview": story.overview,
        "source_count": cov.source_count,
        "rated_count": cov.rated_count,
        "left": cov.left,
        "center": cov.center,
        "right": cov.right,
        "left_pct": cov.left_pct,
        "center_pct": cov.center_pct,
        "right_pct": cov.right_pct,
        "counts": counts,
        "bar": bar,
        "framing": framing,
        "blindspot": cov.blindspot.value if cov.blindspot else None,
        "blindspot_note": blindspot_note(cov),
        "link": link,
    }


def _next_month(day: date) -> date:
    return date(day.year + day.month // 12, day.month % 12 + 1, 1)


def edition_context(
    edition: Edition,
    items: Sequence[tuple[Story, Coverage]],
    plan: Plan | str,
    markers: Markers,
    *,
    links: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The edition template's context for one variant: `plan` is a reader's plan, or
    "web" for the public web version (then `links` are plain story URLs, and there is
    no per-reader value at all)."""
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    cfg = app.config
    base = cfg["BASE_URL"]
    web = plan == WEB
    if links is None:
        links = [markers.hole(link_hole(s.id)) for s, _ in items]
    stories = [
        story_context(s, c, link, n)
        for n, ((s, c), link) in enumerate(zip(items, links, strict=True), start=1)
    ]
    reset = _next_month(edition.date)
    return {
        **common_context(app),
        "subject": edition.subject,
        "preheader": edition.preheader,
        "date_label": f"{edition.date:%A, %B} {edition.date.day}",
        "reading_minutes": markers.hole(READING_MINUTES),
        "stories": stories,
        "blindspots": [s for s in stories if s["blindspot"]],
        "plan": plan.value if isinstance(plan, Plan) else plan,
        "billing": billing_configured(app),
        "free_left": "" if web else markers.hole("free_left"),
        "free_per_month": cfg["FREE_STORIES_PER_MONTH"],
        "free_reset_label": f"{reset:%B} {reset.day}",
        "trial_days_left": "" if web else markers.hole("trial_days_left"),
        "trial_days": cfg["TRIAL_DAYS"],
        "account_url": base + "/account",
        "signup_url": base + "/",
        "web_url": None if web else f"{base}/editions/{edition.date.isoformat()}",
        "archive_url": base + "/editions",
        "unsubscribe_url": None if web else markers.hole("unsubscribe_url"),
    }


def fill_reading_time(output: str, markers: Markers, *, html: bool) -> tuple[str, int]:
    """`output` with its claimed reading time written in, computed from the words it
    shows; and that word count."""
    words = html_words(output) if html else count_words(output)
    return output.replace(markers.hole(READING_MINUTES), str(reading_minutes(words))), words


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
        texts += [story.title, story.overview, story.summary or ""]
        texts += [f"{a.headline} {a.outlet.name}" for a in story.articles]
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
        html, words = fill_reading_time(email.html, markers, html=True)
        text, _ = fill_reading_time(email.text, markers, html=False)
        if plan == Plan.PAID:  # what staff and the CLI see: the plainest variant
            edition.word_count = words
            edition.reading_seconds = reading_seconds(words)
        html, html_holes = markers.take(html)
        text, text_holes = markers.take(text)
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


def web_version(session: Session, edition: Edition) -> str:
    """The public web version of `edition`: the edition template's "web" variant, with
    plain story links (a visit follows the meter like any other) and nothing of any
    reader: no tracked link, no unsubscribe link, no count of theirs."""
    from newsletter.stories.coverage import coverage

    stories = [entry.story for entry in edition.stories]
    items = [(story, coverage(story)) for story in stories]
    texts = [edition.subject, edition.preheader]
    for story in stories:
        texts += [story.title, story.overview, story.summary or ""]
    markers = Markers(texts)
    base = current_app.config["BASE_URL"]
    links = [f"{base}/stories/{story.slug}" for story in stories]
    context = edition_context(edition, items, WEB, markers, links=links)
    [email] = render_for_send(session, "edition", [context], edition_id=edition.id)
    html, _ = fill_reading_time(email.html, markers, html=True)
    if markers.used_in(html):
        # A published template that shows a per-reader value: nothing personal leaves.
        raise CannotCompose("the edition template uses a per-reader value on the web version")
    return html
