"""Fictional demo outlets and stories, so a fresh install has a realistic week of news.

Everything is generated from hand-written building blocks (`data/demo.json`) with a
fixed seed: the same text every time, no network, no outside data. Only the times move,
relative to the current hour, so the stories always look recent. Written through
`import_stories`, like any other import, so running it again updates in place and
creates nothing new.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session

from newsletter.db import utcnow
from newsletter.stories.coverage import BlindspotRule, Side, coverage_of_ratings, side_of
from newsletter.stories.importing import ImportReport, import_stories, slugify
from newsletter.stories.models import Bias, Factuality

DEMO_SEED = 20250515
DEMO_STORY_COUNT = 44
DEMO_DAYS = 5

# The hand-written building blocks (outlets, subjects, events, headlines, FAQ) are data.
DEMO_DATA = Path(__file__).with_name("data") / "demo.json"


@dataclass(frozen=True)
class Subject:
    """One running news subject; each demo story is an event in one of them."""

    topics: tuple[str, ...]
    name: str  # "rent stabilization bill", as it reads after "the"
    title: str  # the same in headline case
    body: str  # who acts, as it reads at the start of a sentence
    what: str  # "would ...", what the measure does
    supporters: str
    opponents: str
    left_voices: str  # whom left-leaning outlets quote, and what they say
    left_view: str
    left_short: str  # the same voices in a headline
    right_voices: str
    right_view: str
    right_short: str
    center_view: str  # a sentence
    figure: str  # a sentence with a number
    next_step: str  # a sentence
    events: tuple[str, ...]


def _by_side(raw: dict[str, list[str]]) -> dict[Side | None, list[str]]:
    return {None if key == "none" else Side(key): value for key, value in raw.items()}


_DATA = json.loads(DEMO_DATA.read_text("utf-8"))
# (slug, name, bias, factuality): every point of the scale, two unrated, all fictional.
OUTLETS: list[tuple[str, str, Bias, Factuality]] = [
    (o["slug"], o["name"], Bias(o["bias"]), Factuality(o["factuality"])) for o in _DATA["outlets"]
]
SUBJECTS: list[Subject] = [
    Subject(**{**raw, "topics": tuple(raw["topics"]), "events": tuple(raw["events"])})
    for raw in _DATA["subjects"]
]
# Per event: the story title, its lead sentence and one detail sentence.
EVENTS: dict[str, tuple[str, str, str]] = {
    key: (e["title"], e["lead"], e["detail"]) for key, e in _DATA["events"].items()
}
SIDE_EVENT_ANGLES = _by_side(_DATA["side_event_angles"])
SIDE_CLOSERS = _by_side(_DATA["side_closers"])
HEADLINES = _by_side(_DATA["headlines"])
FAQ_TEMPLATES: list[tuple[str, str]] = [(f["question"], f["answer"]) for f in _DATA["faq"]]


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


def _words(*parts: str) -> int:
    return sum(len(p.split()) for p in parts)


def _fit(required: list[str], optional: list[str], low: int, high: int) -> str:
    """The required sentences plus as many optional ones as fit, aiming for [low, high]."""
    sentences = list(required)
    for sentence in optional:
        if _words(*sentences, sentence) <= high:
            sentences.append(sentence)
    text = " ".join(sentences)
    assert low <= _words(text) <= high, (text, _words(text))
    return text


def _profiles(rng: random.Random) -> list[str]:
    """Coverage shapes: several blindspots each side, some with no Center at all."""
    profiles = ["left_blindspot"] * 6 + ["right_blindspot"] * 6 + ["no_center"] * 3
    profiles += ["balanced"] * (DEMO_STORY_COUNT - len(profiles))
    rng.shuffle(profiles)
    return profiles


_BIAS_OF_SIDE = {Side.LEFT: Bias.LEFT, Side.CENTER: Bias.CENTER, Side.RIGHT: Bias.RIGHT}


def _side_counts(rng: random.Random, profile: str) -> dict[Side, int]:
    """Distinct outlets per side for a profile, checked against the default blindspot rule."""
    rule = BlindspotRule()
    expected = {"left_blindspot": Side.LEFT, "right_blindspot": Side.RIGHT}.get(profile)
    while True:
        if profile == "balanced":
            counts = {
                Side.LEFT: rng.randint(1, 4),
                Side.CENTER: rng.randint(1, 3),
                Side.RIGHT: rng.randint(1, 4),
            }
        elif profile == "no_center":
            counts = {Side.LEFT: rng.randint(2, 4), Side.CENTER: 0, Side.RIGHT: rng.randint(2, 4)}
        else:
            strong, weak = (
                (Side.RIGHT, Side.LEFT) if profile == "left_blindspot" else (Side.LEFT, Side.RIGHT)
            )
            counts = {strong: rng.randint(3, 6), Side.CENTER: rng.randint(1, 3)}
            counts[weak] = rng.choice([0, 0, 1])
        ratings = {
            f"{side}-{i}": _BIAS_OF_SIDE[side] for side, n in counts.items() for i in range(n)
        }
        if coverage_of_ratings(ratings, rule).blindspot == expected:
            return counts


def _story(
    rng: random.Random,
    number: int,
    subject: Subject,
    event: str,
    profile: str,
    published: datetime,
    pools: dict[Side | None, list[tuple[str, str, Bias, Factuality]]],
) -> dict[str, Any]:
    title_template, lead_template, detail = EVENTS[event]
    day = published.strftime("%A")
    title = title_template.format(title=subject.title)
    lead = lead_template.format(body=subject.body, name=subject.name, what=subject.what, day=day)
    lead = _cap(lead)
    backers = f"The measure is backed by {subject.supporters} and opposed by {subject.opponents}."
    # Not every story carries every sentence, so lengths vary the way real summaries do.
    extras = [x for x in (detail, subject.next_step, subject.center_view) if rng.random() < 0.7]
    overview = _fit([lead, backers, subject.figure], extras, 60, 120)

    analyses: dict[Side, str | None] = {
        Side.LEFT: _fit(
            [
                f"Left-leaning outlets framed the story around {subject.left_voices}, who "
                f"{subject.left_view}.",
                rng.choice(SIDE_EVENT_ANGLES[Side.LEFT]),
            ],
            [rng.choice(SIDE_CLOSERS[Side.LEFT])],
            40,
            90,
        ),
        Side.CENTER: _fit(
            [
                f"Outlets rated center focused on the details: the {subject.name} {subject.what}.",
                subject.center_view,
            ],
            [rng.choice(SIDE_EVENT_ANGLES[Side.CENTER]), rng.choice(SIDE_CLOSERS[Side.CENTER])],
            40,
            90,
        ),
        Side.RIGHT: _fit(
            [
                f"Right-leaning outlets emphasized {subject.right_voices}, who "
                f"{subject.right_view}.",
                rng.choice(SIDE_EVENT_ANGLES[Side.RIGHT]),
            ],
            [rng.choice(SIDE_CLOSERS[Side.RIGHT])],
            40,
            90,
        ),
    }

    counts = _side_counts(rng, profile)
    # A side with no outlets has no analysis, like the seed page's missing viewpoint.
    for side, n in counts.items():
        if n == 0:
            analyses[side] = None
    if profile == "balanced" and rng.random() < 0.12:
        analyses[rng.choice(list(Side))] = None

    outlets: list[tuple[Side | None, tuple[str, str, Bias, Factuality]]] = []
    for side, n in counts.items():
        outlets += [(side, o) for o in rng.sample(pools[side], n)]
    if rng.random() < 0.35:
        outlets.append((None, rng.choice(pools[None])))
    if rng.random() < 0.25 and len(outlets) < 12:
        outlets.append(rng.choice(outlets))  # a second article from the same outlet
    rng.shuffle(outlets)

    names = {
        "title": subject.title,
        "left_short": subject.left_short,
        "right_short": subject.right_short,
    }
    used = set()
    articles = []
    for position, (outlet_side, (slug, _name, _bias, _fact)) in enumerate(outlets):
        options = [title] + [h.format(**names) for h in HEADLINES[outlet_side]]
        free = [h for h in options if h not in used] or [f"{title}: Latest ({position + 1})"]
        headline = rng.choice(free)
        used.add(headline)
        section = slugify(subject.topics[0], 40)
        url = f"https://{slug}.example/{section}/{slugify(headline, 60)}-{rng.randrange(16**6):06x}"
        # The newest article is the story's time; the others came out in the hours before.
        when = published - timedelta(minutes=0 if position == 0 else rng.randint(20, 14 * 60))
        articles.append(
            {"outlet": slug, "url": url, "headline": headline, "published_at": when.isoformat()}
        )

    faq_values = {
        "name": subject.name,
        "what": subject.what,
        "Supporters": _cap(subject.supporters),
        "Opponents": _cap(subject.opponents),
        "lead": lead,
        "figure": subject.figure,
        "next_step": subject.next_step,
    }
    chosen = [0, 1] + sorted(rng.sample(range(2, len(FAQ_TEMPLATES)), rng.randint(0, 3)))
    faq = [
        {
            "question": FAQ_TEMPLATES[i][0].format(**faq_values),
            "answer": FAQ_TEMPLATES[i][1].format(**faq_values),
        }
        for i in chosen
    ]

    return {
        "external_id": f"demo-{number:03d}",
        "title": title,
        "overview": overview,
        "analysis_left": analyses[Side.LEFT],
        "analysis_center": analyses[Side.CENTER],
        "analysis_right": analyses[Side.RIGHT],
        "faq": faq,
        "topics": list(subject.topics),
        "articles": articles,
    }


def demo_document(now: datetime | None = None) -> dict[str, Any]:
    """The demo data in the import format; the same text for any `now`, only times move."""
    anchor = (now or utcnow()).replace(minute=0, second=0, microsecond=0)
    rng = random.Random(DEMO_SEED)
    pools: dict[Side | None, list[tuple[str, str, Bias, Factuality]]] = {
        None: [o for o in OUTLETS if o[2] == Bias.UNRATED]
    }
    for side in Side:
        pools[side] = [o for o in OUTLETS if o[2] != Bias.UNRATED and side_of(o[2]) == side]

    events = [(subject, event) for subject in SUBJECTS for event in subject.events]
    rng.shuffle(events)
    profiles = _profiles(rng)
    stories = []
    for i in range(DEMO_STORY_COUNT):
        subject, event = events[i]
        # Newest first, one every ~2.7 hours, all within the last DEMO_DAYS days.
        published = anchor - timedelta(minutes=30 + i * 160 + rng.randint(0, 60))
        stories.append(_story(rng, i + 1, subject, event, profiles[i], published, pools))
    return {
        "outlets": [
            {
                "slug": slug,
                "name": name,
                "url": f"https://{slug}.example/",
                "bias": bias.value,
                "factuality": factuality.value,
            }
            for slug, name, bias, factuality in OUTLETS
        ],
        "stories": stories,
    }


def load_demo(session: Session, *, now: datetime | None = None) -> ImportReport:
    """Import the demo outlets and stories. Flushes; the caller commits."""
    report = import_stories(session, demo_document(now), now=now)
    if report.errors:  # the demo is ours: a rejection here is a bug, not bad input
        raise RuntimeError(f"demo data rejected: {report.errors[0]}")
    return report
