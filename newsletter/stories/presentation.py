"""What the story page shows, derived from a story: sides, groups, history, factuality."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from newsletter.stories.coverage import SIDES, Coverage, Side, side_of
from newsletter.stories.models import Article, Factuality, Outlet, Story
from newsletter.text import plural

SIDE_LABELS = {Side.LEFT: "Left", Side.CENTER: "Center", Side.RIGHT: "Right"}
FACTUALITY_LABELS = {
    Factuality.VERY_HIGH: "Very high",
    Factuality.HIGH: "High",
    Factuality.MOSTLY_FACTUAL: "Mostly factual",
    Factuality.MIXED: "Mixed",
    Factuality.LOW: "Low",
    Factuality.VERY_LOW: "Very low",
    Factuality.UNRATED: "Not rated",
}
BIAS_LABELS = {
    "far_left": "Far Left",
    "left": "Left",
    "lean_left": "Lean Left",
    "center": "Center",
    "lean_right": "Lean Right",
    "right": "Right",
    "far_right": "Far Right",
    "unrated": "Not rated",
}


@dataclass(frozen=True)
class SideGroup:
    side: Side
    label: str
    articles: list[Article]
    analysis: str | None


@dataclass(frozen=True)
class HistoryBar:
    label: str
    count: int
    x: float
    height: float


@dataclass(frozen=True)
class History:
    bars: list[HistoryBar]
    total: int
    span_label: str
    max_count: int


def side_groups(story: Story) -> list[SideGroup]:
    analyses = {
        Side.LEFT: story.analysis_left,
        Side.CENTER: story.analysis_center,
        Side.RIGHT: story.analysis_right,
    }
    grouped: dict[Side, list[Article]] = {side: [] for side in SIDES}
    for article in sorted(
        story.articles, key=lambda a: (a.published_at is None, a.published_at), reverse=False
    ):
        side = side_of(article.outlet.bias)
        if side is not None:
            grouped[side].append(article)
    return [SideGroup(side, SIDE_LABELS[side], grouped[side], analyses[side]) for side in SIDES]


def unrated_articles(story: Story) -> list[Article]:
    return [a for a in story.articles if side_of(a.outlet.bias) is None]


def outlets_of(story: Story) -> list[Outlet]:
    seen: dict[int, Outlet] = {}
    for article in story.articles:
        seen.setdefault(article.outlet.id, article.outlet)
    return sorted(seen.values(), key=lambda o: o.name.lower())


def history(story: Story, buckets: int = 12, width: float = 480, height: float = 80) -> History:
    """Articles over time, in up to `buckets` equal slices from the first to the last."""
    times = sorted(a.published_at for a in story.articles if a.published_at is not None)
    if not times:
        return History([], 0, "", 0)
    start, end = times[0], times[-1]
    span = max(end - start, timedelta(hours=1))
    step = span / buckets
    counts = [0] * buckets
    for t in times:
        counts[min(buckets - 1, int((t - start) / step))] += 1
    peak = max(counts)
    bar_width = width / buckets
    bars = [
        HistoryBar(
            label=_when(start + step * i),
            count=n,
            x=i * bar_width,
            height=(n / peak) * (height - 14) if peak else 0,
        )
        for i, n in enumerate(counts)
    ]
    hours = span.total_seconds() / 3600
    span_label = plural(round(hours), "hour") if hours < 48 else plural(round(hours / 24), "day")
    return History(bars, len(times), span_label, peak)


def _when(moment: datetime) -> str:
    return f"{moment:%b} {moment.day}, {moment:%H}:00 UTC"


def coverage_summary(cov: Coverage) -> str:
    return (
        f"{plural(cov.source_count, 'outlet')}: "
        f"Left {cov.left_pct}% ({plural(cov.left, 'outlet')}), "
        f"Center {cov.center_pct}% ({plural(cov.center, 'outlet')}), "
        f"Right {cov.right_pct}% ({plural(cov.right, 'outlet')})"
    )
