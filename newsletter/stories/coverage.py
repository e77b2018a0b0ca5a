"""What a story's articles say about it: coverage by side, blindspots, reading length.

Derived on demand from the articles and their outlets' ratings, never stored, so a
corrected outlet rating changes every story's coverage at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from flask import current_app, has_app_context

from newsletter.stories.models import Article, Bias, Story

DEFAULT_BLINDSPOT_MAX_SHARE = 0.2
DEFAULT_BLINDSPOT_MIN_SOURCES = 3


class Side(StrEnum):
    """The three columns of the coverage bar."""

    LEFT = "left"
    CENTER = "center"
    RIGHT = "right"


SIDES: tuple[Side, ...] = (Side.LEFT, Side.CENTER, Side.RIGHT)

_SIDE_OF_BIAS: dict[Bias, Side | None] = {
    Bias.FAR_LEFT: Side.LEFT,
    Bias.LEFT: Side.LEFT,
    Bias.LEAN_LEFT: Side.LEFT,
    Bias.CENTER: Side.CENTER,
    Bias.LEAN_RIGHT: Side.RIGHT,
    Bias.RIGHT: Side.RIGHT,
    Bias.FAR_RIGHT: Side.RIGHT,
    Bias.UNRATED: None,
}


def side_of(bias: Bias | str) -> Side | None:
    """The 7-point scale collapsed to Left / Center / Right; None for unrated outlets."""
    return _SIDE_OF_BIAS[Bias(bias)]


@dataclass(frozen=True)
class BlindspotRule:
    """When a story counts as a blindspot (see `coverage`)."""

    max_share: float = DEFAULT_BLINDSPOT_MAX_SHARE
    min_sources: int = DEFAULT_BLINDSPOT_MIN_SOURCES

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> BlindspotRule:
        return cls(
            max_share=float(config.get("BLINDSPOT_MAX_SHARE", DEFAULT_BLINDSPOT_MAX_SHARE)),
            min_sources=int(config.get("BLINDSPOT_MIN_SOURCES", DEFAULT_BLINDSPOT_MIN_SOURCES)),
        )

    @classmethod
    def current(cls) -> BlindspotRule:
        """The app's configured rule (BLINDSPOT_* settings), or the defaults outside an app."""
        return cls.from_config(current_app.config) if has_app_context() else cls()


@dataclass(frozen=True)
class Coverage:
    """How many distinct rated outlets on each side covered a story, and the shares."""

    left: int
    center: int
    right: int
    left_pct: int
    center_pct: int
    right_pct: int
    # Distinct outlets with an article in the story, unrated ones included.
    source_count: int
    # "left" when the left barely covers the story, "right" likewise, else None.
    blindspot: Side | None

    @property
    def rated_count(self) -> int:
        return self.left + self.center + self.right

    def count(self, side: Side | str) -> int:
        return int(getattr(self, Side(side).value))

    def pct(self, side: Side | str) -> int:
        return int(getattr(self, f"{Side(side).value}_pct"))


def largest_remainder(counts: Sequence[int], total: int = 100) -> list[int]:
    """Whole-number shares of `total` proportional to `counts` that add up to `total`.

    Each share is floored, then the points still missing go to the largest remainders
    (ties to the earlier entry). All zeros when `counts` sum to zero.
    """
    whole = sum(counts)
    if whole == 0:
        return [0] * len(counts)
    shares = [c * total // whole for c in counts]
    remainders = [c * total % whole for c in counts]
    missing = total - sum(shares)
    by_remainder = sorted(range(len(counts)), key=lambda i: (-remainders[i], i))
    for i in by_remainder[:missing]:
        shares[i] += 1
    return shares


def coverage(story: Story | Iterable[Article], rule: BlindspotRule | None = None) -> Coverage:
    """Coverage of a story (or of a list of articles) by political side.

    Each outlet counts once per story however many of its articles the story has, and
    it counts for the side its bias rating falls on: far left, left and lean left are
    Left; center is Center; lean right, right and far right are Right. Unrated outlets
    count towards `source_count` only, not towards any side or percentage.

    Percentages are each side's share of the distinct rated outlets, rounded by largest
    remainder so that they add up to exactly 100 (all 0 when no outlet is rated).

    Blindspot: a story is a blindspot for the left when the left's share of its rated
    outlets is below `rule.max_share` (BLINDSPOT_MAX_SHARE, default 0.2) while at least
    `rule.min_sources` (BLINDSPOT_MIN_SOURCES, default 3) rated outlets cover it; the
    same for the right. A story both sides barely cover is not one side's blindspot, so
    its `blindspot` is None, as it is when too few rated outlets cover it to tell.
    """
    articles = story.articles if isinstance(story, Story) else story
    ratings: dict[str, Bias] = {}
    for article in articles:
        ratings.setdefault(article.outlet.slug, article.outlet.bias)
    return coverage_of_ratings(ratings, rule)


def coverage_of_ratings(ratings: Mapping[str, Bias], rule: BlindspotRule | None = None) -> Coverage:
    """`coverage` from the bias of each distinct outlet, keyed by outlet slug."""
    rule = rule or BlindspotRule.current()
    counts = dict.fromkeys(SIDES, 0)
    for bias in ratings.values():
        side = side_of(bias)
        if side is not None:
            counts[side] += 1
    rated = sum(counts.values())
    left_pct, center_pct, right_pct = largest_remainder([counts[s] for s in SIDES])

    blindspot: Side | None = None
    if rated >= rule.min_sources:
        low = [s for s in (Side.LEFT, Side.RIGHT) if counts[s] / rated < rule.max_share]
        if len(low) == 1:
            blindspot = low[0]

    return Coverage(
        left=counts[Side.LEFT],
        center=counts[Side.CENTER],
        right=counts[Side.RIGHT],
        left_pct=left_pct,
        center_pct=center_pct,
        right_pct=right_pct,
        source_count=len(ratings),
        blindspot=blindspot,
    )
