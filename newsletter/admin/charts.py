"""Charts drawn on the server as SVG: no script, no library, readable at a glance.

Every bar and point carries its number as visible text (and `data-value` for tests);
colours come from classes styled in `static/admin.css`, so the CSP needs nothing inline.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from markupsafe import Markup, escape

WIDTH = 680
LABEL_W = 250
ROW_H = 28


def _svg(height: int, title: str, body: list[str]) -> Markup:
    return Markup(  # noqa: S704 (every value below is escaped or a number)
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="{WIDTH}" height="{height}" '
        f'role="img" aria-label="{escape(title)}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{escape(title)}</title>{''.join(body)}</svg>"
    )


def _short(text: str, limit: int = 32) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _legend(series: Sequence[tuple[str, str]], y: int = 14) -> list[str]:
    out, x = [], LABEL_W
    for key, label in series:
        out.append(f'<rect class="s-{key}" x="{x}" y="{y - 10}" width="12" height="12"/>')
        out.append(f'<text class="legend" x="{x + 16}" y="{y}">{escape(label)}</text>')
        x += 24 + 8 * len(label)
    return out


def stacked_bars(
    rows: Sequence[tuple[str, Sequence[tuple[str, int]]]],
    series: Sequence[tuple[str, str]],
    title: str,
) -> Markup:
    """One horizontal bar per row, its segments stacked, the numbers written after it."""
    if not rows:
        return Markup('<p class="empty">Nothing to show yet.</p>')
    names = dict(series)
    top = max(sum(v for _, v in segs) for _, segs in rows) or 1
    bar_w = WIDTH - LABEL_W - 150
    body = _legend(series)
    for i, (label, segments) in enumerate(rows):
        y = 26 + i * ROW_H
        body.append(
            f'<text class="label" x="{LABEL_W - 8}" y="{y + 17}">'
            f"<title>{escape(label)}</title>{escape(_short(label))}</text>"
        )
        x = float(LABEL_W)
        for key, value in segments:
            w = bar_w * value / top
            body.append(
                f'<rect class="s-{key}" x="{x:.1f}" y="{y + 4}" width="{w:.1f}" '
                f'height="{ROW_H - 8}" '
                f'data-series="{key}" data-value="{value}">'
                f"<title>{escape(names[key])}: {value}</title></rect>"
            )
            x += w
        numbers = " · ".join(f"{v} {names[k].lower()}" for k, v in segments)
        body.append(f'<text class="value" x="{x + 6:.1f}" y="{y + 17}">{escape(numbers)}</text>')
    return _svg(36 + len(rows) * ROW_H, title, body)


def lines(
    days: Sequence[date], series: Sequence[tuple[str, str, Sequence[int]]], title: str
) -> Markup:
    """A line per series over the days, each labelled with its latest value."""
    if not days:
        return Markup('<p class="empty">Nothing to show yet.</p>')
    height, left, right, top_pad, bottom = 240, 48, 130, 26, 200
    top = max((max(values) for _, _, values in series if values), default=0)
    top = max(top, 1)
    step = max(1, _nice(top / 4))
    top = step * -(-top // step)
    plot_w = WIDTH - left - right
    n = len(days)

    def px(i: int) -> float:
        return left + (plot_w * i / (n - 1) if n > 1 else plot_w / 2)

    def py(v: float) -> float:
        return bottom - (bottom - top_pad) * v / top

    body = [f'<line class="axis" x1="{left}" y1="{bottom}" x2="{left + plot_w}" y2="{bottom}"/>']
    for tick in range(0, int(top) + 1, int(step)):
        y = py(tick)
        body.append(
            f'<line class="grid" x1="{left}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}"/>'
        )
        body.append(f'<text class="tick" x="{left - 6}" y="{y + 4:.1f}">{tick}</text>')
    for i in sorted({0, n // 2, n - 1}):
        anchor = " first" if i == 0 else (" last" if i == n - 1 else "")
        body.append(
            f'<text class="xtick{anchor}" x="{px(i):.1f}" y="{bottom + 18}">'
            f"{days[i]:%b} {days[i].day}</text>"
        )
    label_ys: list[float] = []
    for key, label, values in series:
        points = " ".join(f"{px(i):.1f},{py(v):.1f}" for i, v in enumerate(values))
        body.append(f'<polyline class="line s-{key}" points="{points}"/>')
        for i, v in enumerate(values):
            body.append(
                f'<circle class="s-{key}" cx="{px(i):.1f}" cy="{py(v):.1f}" r="2.5" '
                f'data-series="{key}" data-day="{days[i].isoformat()}" data-value="{v}">'
                f"<title>{days[i].isoformat()} {escape(label)}: {v}</title></circle>"
            )
        y = py(values[-1]) + 4
        while any(abs(y - other) < 13 for other in label_ys):
            y += 13
        label_ys.append(y)
        body.append(
            f'<text class="end s-{key}-text" x="{px(n - 1) + 8:.1f}" y="{y:.1f}">'
            f"{escape(label)} {values[-1]}</text>"
        )
    return _svg(height, title, body)


def _nice(raw: float) -> int:
    for base in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000):
        if raw <= base:
            return base
    return int(raw)


def funnel(steps: Sequence[tuple[str, int]], title: str) -> Markup:
    """Each step's bar as a share of the first, with its number and its conversion from
    the step before."""
    first = steps[0][1] if steps else 0
    bar_w = WIDTH - LABEL_W - 170
    body = []
    for i, (label, value) in enumerate(steps):
        y = 4 + i * (ROW_H + 6)
        w = bar_w * value / first if first else 0
        prev = steps[i - 1][1] if i else None
        rate = ""
        if prev is not None:
            rate = f" ({100 * value / prev:.1f}% of the step before)" if prev else " (–)"
        body.append(f'<text class="label" x="{LABEL_W - 8}" y="{y + 18}">{escape(label)}</text>')
        body.append(
            f'<rect class="s-funnel" x="{LABEL_W}" y="{y + 4}" width="{w:.1f}" '
            f'height="{ROW_H - 6}" data-value="{value}">'
            f"<title>{escape(label)}: {value}</title></rect>"
        )
        body.append(
            f'<text class="value" x="{LABEL_W + w + 6:.1f}" y="{y + 18}">'
            f"{value}{escape(rate)}</text>"
        )
    return _svg(8 + len(steps) * (ROW_H + 6), title, body)


def rate_bars(
    rows: Sequence[tuple[str, float, str]], limits: Sequence[float], title: str
) -> Markup:
    """One bar per row for a rate (0.0021 = 0.21%), with a vertical line at each of
    `limits` (labelled), the rate and `detail` written after the bar."""
    if not rows:
        return Markup('<p class="empty">Nothing to show yet.</p>')
    top = max([*(r for _, r, _ in rows), *limits]) * 1.25 or 1.0
    bar_w = WIDTH - LABEL_W - 190
    height = 30 + len(rows) * ROW_H
    body = []
    for limit in limits:
        x = LABEL_W + bar_w * limit / top
        body.append(
            f'<line class="limit" x1="{x:.1f}" y1="14" x2="{x:.1f}" y2="{height - 2}" '
            f'data-limit="{limit}"/>'
        )
        body.append(f'<text class="limit" x="{x:.1f}" y="11">{limit:.1%}</text>')
    for i, (label, rate, detail) in enumerate(rows):
        y = 18 + i * ROW_H
        w = bar_w * rate / top
        over = " over" if any(rate >= limit for limit in limits[-1:]) else ""
        body.append(
            f'<text class="label" x="{LABEL_W - 8}" y="{y + 17}">'
            f"<title>{escape(label)}</title>{escape(_short(label))}</text>"
        )
        body.append(
            f'<rect class="s-rate{over}" x="{LABEL_W}" y="{y + 4}" width="{w:.1f}" '
            f'height="{ROW_H - 8}" data-value="{rate:.6f}">'
            f"<title>{escape(label)}: {rate:.2%}</title></rect>"
        )
        body.append(
            f'<text class="value" x="{LABEL_W + w + 6:.1f}" y="{y + 17}">'
            f"{rate:.2%} {escape(detail)}</text>"
        )
    return _svg(height, title, body)
