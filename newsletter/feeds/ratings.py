"""Outlet ratings from a file keyed by domain (`newsletter outlets ratings import FILE`).

CSV (with a header row) or JSON Lines, in Media Bias/Fact Check's shape: `source` (the
domain; `domain` is accepted too), `bias`, `factual_reporting`. Each row is accepted or
rejected with a reason; an accepted row rates every outlet whose site is on that domain
(or a subdomain of it), except outlets whose rating staff set, which keep theirs.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.db import utcnow
from newsletter.inputs import storable
from newsletter.stories.models import RATING_SET_BY_MAX, Bias, Factuality, Outlet, RatingSource

# MBFC's bias categories onto the 7-point scale (after lower-casing and turning dashes into
# spaces). MBFC's other categories (pro-science, conspiracy-pseudoscience, questionable,
# satire) are not places on a left–right scale, so such rows are rejected.
BIAS_MAP: dict[str, Bias] = {
    "extreme left": Bias.FAR_LEFT,
    "far left": Bias.FAR_LEFT,
    "left": Bias.LEFT,
    "left center": Bias.LEAN_LEFT,
    "least biased": Bias.CENTER,
    "center": Bias.CENTER,
    "right center": Bias.LEAN_RIGHT,
    "right": Bias.RIGHT,
    "far right": Bias.FAR_RIGHT,
    "extreme right": Bias.FAR_RIGHT,
    "": Bias.UNRATED,
    "unrated": Bias.UNRATED,
    "not rated": Bias.UNRATED,
}
FACTUALITY_MAP: dict[str, Factuality] = {
    "very high": Factuality.VERY_HIGH,
    "high": Factuality.HIGH,
    "mostly factual": Factuality.MOSTLY_FACTUAL,
    "mixed": Factuality.MIXED,
    "low": Factuality.LOW,
    "very low": Factuality.VERY_LOW,
    "": Factuality.UNRATED,
    "unrated": Factuality.UNRATED,
    "not rated": Factuality.UNRATED,
}
MAX_ROWS = 200_000
_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True)
class Rating:
    domain: str
    bias: Bias
    factuality: Factuality


@dataclass(frozen=True)
class RowError:
    line: int
    reason: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.reason}"


@dataclass
class RatingsReport:
    accepted: int = 0
    rejected: list[RowError] = field(default_factory=list)
    rated: list[str] = field(default_factory=list)  # outlet slugs given a rating
    unchanged: list[str] = field(default_factory=list)  # already rated so
    kept_staff: list[str] = field(default_factory=list)  # staff's own rating kept
    unmatched: int = 0  # accepted rows whose domain is no outlet's


def _words(value: object) -> str:
    text = value if isinstance(value, str) else ""
    return " ".join(text.lower().replace("-", " ").replace("–", " ").split())


def normalize_domain(raw: object) -> str | None:
    """`www.Example.com`, `https://example.com/`, `example.com` → `example.com`."""
    if not isinstance(raw, str):
        return None
    text = raw.strip().lower()
    if "://" not in text:
        text = "//" + text
    try:
        host = urlsplit(text).hostname or ""
    except ValueError:
        return None
    host = host.rstrip(".")
    if host.startswith("www."):
        host = host[4:]
    labels = host.split(".")
    if len(labels) < 2 or len(host) > 253 or not all(_LABEL.fullmatch(p) for p in labels):
        return None
    return host


def parse_row(row: object) -> Rating | str:
    """A row (a mapping of column to value) as a Rating, or the reason it is rejected."""
    if not isinstance(row, dict):
        return "a row must be an object with source, bias and factual_reporting"
    raw_domain = row.get("source", row.get("domain"))
    domain = normalize_domain(raw_domain)
    if domain is None:
        return f"source {str(raw_domain)[:100]!r} is not a domain name such as example.com"
    bias_words = _words(row.get("bias"))
    if row.get("bias") is not None and not isinstance(row.get("bias"), str):
        return "bias must be text"
    bias = BIAS_MAP.get(bias_words)
    if bias is None:
        return f"bias {bias_words[:60]!r} is not on the left–right scale ({domain})"
    fact_raw = row.get("factual_reporting", row.get("factuality"))
    if fact_raw is not None and not isinstance(fact_raw, str):
        return "factual_reporting must be text"
    factuality = FACTUALITY_MAP.get(_words(fact_raw))
    if factuality is None:
        return f"factual_reporting {_words(fact_raw)[:60]!r} is not a known rating ({domain})"
    if bias == Bias.UNRATED and factuality == Factuality.UNRATED:
        return f"neither bias nor factual_reporting is given ({domain})"
    return Rating(domain, bias, factuality)


def read_rows(text: str) -> Iterator[tuple[int, object]]:
    """(line number, row) for JSON Lines (the first non-blank character is `{`) or CSV."""
    if text.startswith("\ufeff"):
        text = text[1:]
    if text.lstrip().startswith("{"):
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                yield number, json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, f"not valid JSON ({exc.msg})"
            except (ValueError, RecursionError):
                yield number, "not valid JSON"
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    try:
        for row in reader:
            yield (
                reader.line_num,
                {k.strip().lower(): v for k, v in row.items() if isinstance(k, str)},
            )
    except csv.Error as exc:  # a broken quote or an oversized field ends the file's rows
        yield reader.line_num, f"not valid CSV ({exc}); the rest of the file was not read"


def outlet_domain(outlet: Outlet) -> str | None:
    return normalize_domain(outlet.url) if outlet.url else None


def import_ratings(session: Session, text: str, *, label: str) -> RatingsReport:
    """Apply the file's ratings; `label` (the file's name) is recorded as who set them."""
    report = RatingsReport()
    ratings: dict[str, Rating] = {}
    first_line: dict[str, int] = {}
    for number, row in read_rows(text):
        if number > MAX_ROWS:
            report.rejected.append(RowError(number, f"more than {MAX_ROWS} rows; the rest ignored"))
            break
        result = parse_row(row) if not isinstance(row, str) else row
        if isinstance(result, str):
            report.rejected.append(RowError(number, result))
            continue
        if result.domain in ratings:
            report.rejected.append(
                RowError(
                    number, f"{result.domain} is rated already on line {first_line[result.domain]}"
                )
            )
            continue
        ratings[result.domain] = result
        first_line[result.domain] = number
        report.accepted += 1
    matched: set[str] = set()
    set_by = f"ratings file {label}"[:RATING_SET_BY_MAX]
    if not storable(set_by):
        set_by = "ratings file"
    now = utcnow()
    for outlet in session.scalars(select(Outlet).order_by(Outlet.slug)):
        rating = _rating_for(outlet_domain(outlet), ratings)
        if rating is None:
            continue
        matched.add(rating.domain)
        if outlet.rating_source == RatingSource.STAFF:
            report.kept_staff.append(outlet.slug)
            continue
        if (outlet.bias, outlet.factuality) == (rating.bias, rating.factuality):
            report.unchanged.append(outlet.slug)
            continue
        outlet.bias, outlet.factuality = rating.bias, rating.factuality
        outlet.rating_source = RatingSource.RATINGS_FILE
        outlet.rating_set_by = set_by
        outlet.updated_at = now
        report.rated.append(outlet.slug)
    report.unmatched = len(ratings) - len(matched)
    session.flush()
    return report


def _rating_for(domain: str | None, ratings: dict[str, Rating]) -> Rating | None:
    """The rating of the domain itself, else of its nearest parent (news.example.com →
    example.com)."""
    while domain and "." in domain:
        if domain in ratings:
            return ratings[domain]
        domain = domain.split(".", 1)[1]
    return None
