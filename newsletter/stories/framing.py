"""How each side framed a story, in the few words an email has room for.

Representative article of a side: among the story's articles from outlets on that side,
the one from the outlet with the highest factuality rating (very high first, unrated
last); ties go to the earliest published (undated last), then to the lowest article id,
so the choice is stable from one rendering to the next.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from newsletter.stories.coverage import SIDES, Side, side_of
from newsletter.stories.models import Article, Factuality, Story

SUMMARY_WORDS = 50
FACTUALITY_ORDER = [
    Factuality.VERY_HIGH,
    Factuality.HIGH,
    Factuality.MOSTLY_FACTUAL,
    Factuality.MIXED,
    Factuality.LOW,
    Factuality.VERY_LOW,
    Factuality.UNRATED,
]
_RANK = {f: i for i, f in enumerate(FACTUALITY_ORDER)}
# A word that ends a sentence: . ! or ?, perhaps closed by a quote or bracket.
_SENTENCE_END = re.compile(r"[.!?][\"'”’)\]]*$")


@dataclass(frozen=True)
class Framing:
    side: Side
    headline: str | None  # None: no outlet on this side covered the story
    outlet: str | None


def _rank(article: Article) -> tuple[int, bool, float, int]:
    published = article.published_at
    return (
        _RANK.get(Factuality(article.outlet.factuality), len(_RANK)),
        published is None,
        published.timestamp() if published else 0.0,
        article.id or 0,
    )


def representatives(story: Story) -> list[Framing]:
    """One `Framing` per side, Left, Center, Right, chosen by the rule above."""
    best: dict[Side, Article] = {}
    for article in story.articles:
        side = side_of(article.outlet.bias)
        if side is None:
            continue
        if side not in best or _rank(article) < _rank(best[side]):
            best[side] = article
    return [
        Framing(side, best[side].headline, best[side].outlet.name)
        if side in best
        else Framing(side, None, None)
        for side in SIDES
    ]


def short_overview(story: Story, words: int = SUMMARY_WORDS) -> str:
    """The story's `summary` when it has one; else its overview cut after the last whole
    sentence within about `words` words (10% slack), or after `words` words with an
    ellipsis when even the first sentence is longer."""
    if story.summary:
        return story.summary
    return cut_at_sentence(story.overview, words)


def cut_at_sentence(text: str, words: int = SUMMARY_WORDS) -> str:
    tokens = text.split()
    limit = int(words * 1.1)
    if len(tokens) <= limit:
        return " ".join(tokens)
    end = 0  # tokens up to the last sentence end within the limit
    for i, token in enumerate(tokens[:limit], start=1):
        if _SENTENCE_END.search(token):
            end = i
    if end == 0:  # one long first sentence
        return " ".join(tokens[:words]).rstrip(",;:") + "…"
    return " ".join(tokens[:end])
