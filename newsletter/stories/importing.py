"""Importing outlets and stories from the JSON format in `schema/stories.schema.json`.

One path writes stories: the CLI (`newsletter stories import`), the API
(`POST /api/stories`) and the demo data all call `import_stories`. Each record is
accepted or rejected on its own: a rejected record writes nothing (its own SAVEPOINT)
and is reported with its index, the path of the offending field and the reason, while
the good records around it still land. The service flushes; the caller commits.
"""

from __future__ import annotations

import json
import re
import sys
import unicodedata
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonschema import Draft202012Validator, FormatChecker, ValidationError
from sqlalchemy import or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from newsletter.db import utcnow
from newsletter.errors import InvalidInput
from newsletter.inputs import storable
from newsletter.jsonbody import parse_json_body
from newsletter.stories.models import (
    SLUG_MAX,
    Article,
    Bias,
    Factuality,
    Outlet,
    RatingSource,
    Story,
)

SCHEMA_PATH = Path(__file__).parent / "schema" / "stories.schema.json"
COLLECTIONS = ("outlets", "stories")

_SLUG_PATTERN = "^[a-z0-9]+(-[a-z0-9]+)*$"
_NONBLANK_PATTERN = "\\S"
_DATETIME_REASON = "must be an ISO 8601 date and time with a time zone, e.g. 2025-05-15T08:30:00Z"
_URL_REASON = "must be an absolute http:// or https:// URL in ASCII (percent-encoded)"
_CONFLICT_REASON = "conflicted with a change made at the same time; import it again"
_TYPE_WORDS = {
    "string": "a string",
    "object": "an object",
    "array": "an array",
    "null": "null",
    "number": "a number",
    "integer": "an integer",
    "boolean": "true or false",
}


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"


# When one import touches a record twice, the report shows the strongest outcome.
_RANK = {Outcome.UNCHANGED: 0, Outcome.UPDATED: 1, Outcome.CREATED: 2}


@dataclass(frozen=True)
class RecordError:
    """Why one record (or, with `index` None, the whole document) was rejected."""

    record: str | None  # "stories[3]"; None for the document as a whole
    index: int | None  # the record's position in its list
    id: str | None  # the record's external_id (stories) or slug (outlets), when it had one
    path: str  # the offending field, e.g. "stories[3].articles[0].url"
    reason: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "record": self.record,
            "index": self.index,
            "id": self.id,
            "path": self.path,
            "reason": self.reason,
        }

    def __str__(self) -> str:
        return f"{self.path or 'document'}: {self.reason}"


@dataclass
class ImportReport:
    stories: dict[str, Outcome] = field(default_factory=dict)  # by external_id
    outlets: dict[str, Outcome] = field(default_factory=dict)  # by slug
    errors: list[RecordError] = field(default_factory=list)

    def _note(self, bucket: dict[str, Outcome], key: str, outcome: Outcome) -> None:
        if key not in bucket or _RANK[outcome] > _RANK[bucket[key]]:
            bucket[key] = outcome

    def _with(self, bucket: dict[str, Outcome], outcome: Outcome) -> list[str]:
        return [key for key, value in bucket.items() if value == outcome]

    @property
    def created(self) -> list[str]:
        return self._with(self.stories, Outcome.CREATED)

    @property
    def updated(self) -> list[str]:
        return self._with(self.stories, Outcome.UPDATED)

    @property
    def unchanged(self) -> list[str]:
        return self._with(self.stories, Outcome.UNCHANGED)

    def stories_with(self, outcome: Outcome) -> list[str]:
        return self._with(self.stories, outcome)

    def outlets_with(self, outcome: Outcome) -> list[str]:
        return self._with(self.outlets, outcome)

    @property
    def rejected(self) -> list[str]:
        """The rejected records ("stories[3]", or "document"), in order, once each."""
        return list(dict.fromkeys(e.record or "document" for e in self.errors))

    def as_dict(self) -> dict[str, Any]:
        return {
            "created": len(self.created),
            "updated": len(self.updated),
            "unchanged": len(self.unchanged),
            "rejected": len(self.rejected),
            "outlets": {o.value: len(self.outlets_with(o)) for o in Outcome},
            "errors": [e.as_dict() for e in self.errors],
        }


class _Rejected(Exception):
    def __init__(self, errors: list[RecordError]) -> None:
        super().__init__(errors)
        self.errors = errors


# --- parsing and validation ----------------------------------------------------------


def parse_json(raw: bytes | str) -> object:
    """The JSON document in `raw`, or `InvalidInput` saying what is wrong with it: the
    same refusals as every JSON request body (`newsletter.jsonbody`)."""
    return parse_json_body(raw.encode("utf-8") if isinstance(raw, str) else raw)


def parse_datetime(value: str) -> datetime:
    """An ISO 8601 date and time with an offset, as aware UTC (ValueError otherwise)."""
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise ValueError("no time zone")
    return parsed.astimezone(UTC)


_formats = FormatChecker(formats=())


@_formats.checks("date-time", raises=(ValueError, OverflowError))
def _is_datetime(value: object) -> bool:
    if isinstance(value, str):
        parse_datetime(value)
    return True


@_formats.checks("uri")
def _is_http_url(value: object) -> bool:
    if not isinstance(value, str):
        return True
    if any(ch.isspace() or unicodedata.category(ch) == "Cc" for ch in value):
        return False
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    return parts.scheme.lower() in {"http", "https"} and bool(parts.hostname)


@lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))


@lru_cache(maxsize=1)
def _validator() -> Draft202012Validator:
    return Draft202012Validator(schema(), format_checker=_formats)


def format_path(parts: list[str | int]) -> str:
    """["stories", 3, "articles", 0, "url"] -> "stories[3].articles[0].url"."""
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part)}]"
    return out


def _explain(error: ValidationError) -> Iterator[tuple[list[str | int], str]]:
    """(path, reason) pairs in words an importer can act on."""
    path = list(error.absolute_path)
    keyword, expected, instance = error.validator, error.validator_value, error.instance
    if keyword == "required":
        for name in expected:
            if name not in instance:
                yield [*path, name], "is required"
    elif keyword == "additionalProperties":
        known = error.schema.get("properties", {})
        for name in instance:
            if name not in known:
                yield [*path, name], "is not a known field"
    elif keyword == "type":
        types = [expected] if isinstance(expected, str) else list(expected)
        yield path, "must be " + " or ".join(_TYPE_WORDS.get(t, t) for t in types)
    elif keyword == "enum":
        yield path, "must be one of: " + ", ".join(str(v) for v in expected)
    elif keyword == "minLength":
        yield path, "must not be empty" if expected == 1 else f"needs {expected}+ characters"
    elif keyword == "maxLength":
        yield path, f"must be at most {expected} characters long (it has {len(instance)})"
    elif keyword == "minItems":
        yield path, f"needs at least {expected} item{'s' if expected != 1 else ''}"
    elif keyword == "maxItems":
        yield path, f"can have at most {expected} items (it has {len(instance)})"
    elif keyword in {"format", "pattern"} and error.schema.get("format") == "uri":
        yield path, _URL_REASON
    elif keyword == "format" and expected == "date-time":
        yield path, _DATETIME_REASON
    elif keyword == "pattern" and expected == _SLUG_PATTERN:
        yield path, "must be lowercase letters and digits joined by single hyphens, e.g. daily-wire"
    elif keyword == "pattern" and expected == _NONBLANK_PATTERN:
        yield path, "must not be blank"
    else:
        yield path, error.message


# Control characters other than tab and line breaks: XML (so MJML and every HTML email)
# cannot carry them, and no reader could see them.
_CONTROL = re.compile(r"[\x01-\x08\x0b\x0c\x0e-\x1f\x7f]")


def _unsafe_text(node: object, path: list[str | int]) -> Iterator[tuple[list[str | int], str]]:
    """Strings no database column can hold (NUL bytes, lone surrogates) or no email can
    show (control characters)."""
    if isinstance(node, str):
        if not storable(node):
            yield path, "contains a NUL or an unpaired surrogate character"
        elif found := _CONTROL.search(node):
            yield path, f"contains a control character (U+{ord(found.group()):04X})"
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _unsafe_text(item, [*path, i])
    elif isinstance(node, dict):
        for key, value in node.items():
            yield from _unsafe_text(value, [*path, key])


def _record_id(data: object, collection: str, index: int) -> str | None:
    try:
        value = data[collection][index]["slug" if collection == "outlets" else "external_id"]  # type: ignore[index]
    except (KeyError, IndexError, TypeError):
        return None
    return value if isinstance(value, str) else None


def validate(data: object) -> list[RecordError]:
    """Every problem the schema (and the text check) finds, at most one per field."""
    problems: dict[str, RecordError] = {}
    found = [p for error in _validator().iter_errors(data) for p in _explain(error)]
    found += list(_unsafe_text(data, []))
    for parts, reason in found:
        path = format_path(parts)
        if path in problems:
            continue
        if len(parts) >= 2 and parts[0] in COLLECTIONS and isinstance(parts[1], int):
            collection, index = str(parts[0]), parts[1]
            record = f"{collection}[{index}]"
            problems[path] = RecordError(
                record, index, _record_id(data, collection, index), path, reason
            )
        else:
            if not parts and not isinstance(data, dict):
                reason = 'must be a JSON object: {"outlets": [...], "stories": [...]}'
            problems[path] = RecordError(None, None, None, path, reason)
    return sorted(problems.values(), key=_error_order)


def _error_order(error: RecordError) -> tuple[int, int, int]:
    if error.record is None:
        return (-1, 0, 0)
    return (COLLECTIONS.index(error.record.split("[")[0]), error.index or 0, 0)


# --- slugs ----------------------------------------------------------------------------


def slugify(text: str, max_length: int = SLUG_MAX - 8) -> str:
    """ASCII lowercase words joined by hyphens, cut at a word; room left for "-NN"."""
    ascii_text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    slug = re.sub(r"[^a-z0-9]+", "-", ascii_text.lower()).strip("-")
    if len(slug) > max_length:
        cut = slug[: max_length + 1]
        slug = cut.rsplit("-", 1)[0] if "-" in cut else slug[:max_length]
    return slug.strip("-") or "story"


def unique_slug(session: Session, base: str, also_taken: Collection[str] = ()) -> str:
    """`base`, or `base-N` with the first N no story (nor `also_taken`) uses."""
    taken = set(
        session.scalars(
            select(Story.slug).where(or_(Story.slug == base, Story.slug.like(f"{base}-%")))
        )
    ) | set(also_taken)
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


# --- writing --------------------------------------------------------------------------


def _clean(value: str) -> str:
    return value.strip()


def _analysis(value: str | None) -> str | None:
    """Empty or missing means "Analysis unavailable for this viewpoint"."""
    return (value.strip() or None) if value else None


def _upsert_outlet(
    session: Session, record: dict[str, Any], now: datetime
) -> tuple[Outlet, Outcome]:
    values: dict[str, Any] = {
        "name": _clean(record["name"]),
        "url": record.get("url"),
        "bias": Bias(record["bias"]),
        "factuality": Factuality(record.get("factuality", Factuality.UNRATED)),
    }
    # The document's rating is editorial: a ratings file never overwrites it.
    if values["bias"] != Bias.UNRATED or values["factuality"] != Factuality.UNRATED:
        values["rating_source"] = RatingSource.STAFF
    outlet = session.scalar(select(Outlet).where(Outlet.slug == record["slug"]))
    if outlet is None:
        outlet = Outlet(slug=record["slug"], created_at=now, updated_at=now, **values)
        session.add(outlet)
        return outlet, Outcome.CREATED
    changed = {k: v for k, v in values.items() if getattr(outlet, k) != v}
    if not changed:
        return outlet, Outcome.UNCHANGED
    for key, value in changed.items():
        setattr(outlet, key, value)
    outlet.updated_at = now
    return outlet, Outcome.UPDATED


def _snapshot(story: Story) -> tuple[Any, ...]:
    """Everything an import can change about a story, to tell updated from unchanged."""
    articles = sorted((a.url, a.headline, a.outlet.slug, a.published_at) for a in story.articles)
    return (
        story.slug,
        story.title,
        story.overview,
        story.summary,
        story.analysis_left,
        story.analysis_center,
        story.analysis_right,
        story.faq,
        story.topics,
        story.published_at,
        articles,
    )


def _import_story(
    session: Session,
    record: dict[str, Any],
    ref: str,
    index: int,
    now: datetime,
    rejected_outlets: dict[str, str],
) -> tuple[Outcome, list[tuple[str, Outcome]]]:
    external_id: str = record["external_id"]
    articles: list[dict[str, Any]] = record["articles"]

    def problem(path: str, reason: str) -> RecordError:
        return RecordError(ref, index, external_id, f"{ref}.{path}", reason)

    # Check everything that needs the database before writing anything.
    errors: list[RecordError] = []
    inline = {a["outlet"]["slug"]: a["outlet"] for a in articles if isinstance(a["outlet"], dict)}
    wanted = {a["outlet"] for a in articles if isinstance(a["outlet"], str)} - inline.keys()
    outlets: dict[str, Outlet] = {}
    if wanted:
        outlets = {
            o.slug: o for o in session.scalars(select(Outlet).where(Outlet.slug.in_(wanted)))
        }
    seen_urls: dict[str, int] = {}
    for j, article in enumerate(articles):
        slug = article["outlet"]
        if isinstance(slug, str) and slug not in inline and slug not in outlets:
            if slug in rejected_outlets:
                reason = (
                    f"refers to outlet {slug!r}, which was rejected (see {rejected_outlets[slug]})"
                )
            else:
                reason = (
                    f'refers to unknown outlet {slug!r}: list it under "outlets" '
                    "or give the outlet object here"
                )
            errors.append(problem(f"articles[{j}].outlet", reason))
        if article["url"] in seen_urls:
            errors.append(
                problem(f"articles[{j}].url", f"repeats articles[{seen_urls[article['url']]}].url")
            )
        seen_urls.setdefault(article["url"], j)

    story = session.scalar(select(Story).where(Story.external_id == external_id))
    slug = record.get("slug")
    if slug is not None:
        owner = session.scalar(select(Story.external_id).where(Story.slug == slug))
        if owner is not None and owner != external_id:
            errors.append(problem("slug", f"{slug!r} is already used by story {owner!r}"))
    if errors:
        raise _Rejected(errors)

    outlet_outcomes = []
    for outlet_slug, outlet_record in inline.items():
        outlets[outlet_slug], outcome = _upsert_outlet(session, outlet_record, now)
        outlet_outcomes.append((outlet_slug, outcome))

    dated = [parse_datetime(a["published_at"]) for a in articles if "published_at" in a]
    if "published_at" in record:
        published_at = parse_datetime(record["published_at"])
    elif dated:
        published_at = max(dated)
    else:
        published_at = story.published_at if story else now
    values: dict[str, Any] = {
        "title": _clean(record["title"]),
        "overview": _clean(record["overview"]),
        "summary": _clean(record["summary"]) if record.get("summary") else None,
        "analysis_left": _analysis(record.get("analysis_left")),
        "analysis_center": _analysis(record.get("analysis_center")),
        "analysis_right": _analysis(record.get("analysis_right")),
        "faq": [
            {"question": _clean(q["question"]), "answer": _clean(q["answer"])}
            for q in record.get("faq", [])
        ],
        "topics": [_clean(t) for t in record.get("topics", [])],
        "published_at": published_at,
    }

    if story is None:
        before = None
        story = Story(
            external_id=external_id,
            slug=slug or unique_slug(session, slugify(values["title"])),
            created_at=now,
            updated_at=now,
            **values,
        )
        session.add(story)
    else:
        before = _snapshot(story)
        for key, value in values.items():
            if getattr(story, key) != value:
                setattr(story, key, value)
        if slug is not None and slug != story.slug:
            story.slug = slug

    # The import lists the story's whole set of articles: match them by URL, so an
    # unchanged article keeps its row, and drop the ones no longer listed.
    existing = {a.url: a for a in story.articles}
    for article in articles:
        outlet_ref = article["outlet"]
        outlet = outlets[outlet_ref if isinstance(outlet_ref, str) else outlet_ref["slug"]]
        fields: dict[str, Any] = {
            "headline": _clean(article["headline"]),
            "outlet": outlet,
            "published_at": parse_datetime(article["published_at"])
            if "published_at" in article
            else None,
        }
        row = existing.pop(article["url"], None)
        if row is None:
            story.articles.append(Article(url=article["url"], **fields))
        else:
            for key, value in fields.items():
                if getattr(row, key) != value:
                    setattr(row, key, value)
    for gone in existing.values():
        story.articles.remove(gone)

    if before is None:
        return Outcome.CREATED, outlet_outcomes
    if _snapshot(story) == before:
        return Outcome.UNCHANGED, outlet_outcomes
    story.updated_at = now
    return Outcome.UPDATED, outlet_outcomes


def import_stories(session: Session, data: object, *, now: datetime | None = None) -> ImportReport:
    """Create or update the outlets and stories in `data` (the parsed JSON document).

    Outlets are matched by slug, stories by external_id; an update replaces the story's
    fields and its set of articles. Outlets are imported first so stories can refer to
    them. A problem with the document's shape rejects it whole; a problem with one
    record rejects that record alone. Flushes; the caller commits.
    """
    now = now or utcnow()
    report = ImportReport()
    problems = validate(data)
    if any(p.record is None for p in problems):
        report.errors = [p for p in problems if p.record is None]
        return report
    assert isinstance(data, dict)
    by_record: dict[str, list[RecordError]] = {}
    for p in problems:
        by_record.setdefault(p.record or "", []).append(p)

    rejected_outlets: dict[str, str] = {}
    for index, record in enumerate(data.get("outlets", [])):
        ref = f"outlets[{index}]"
        errors = by_record.get(ref)
        if not errors:
            try:
                with session.begin_nested():
                    _, outcome = _upsert_outlet(session, record, now)
                    session.flush()
            except IntegrityError:
                errors = [RecordError(ref, index, record["slug"], ref, _CONFLICT_REASON)]
            else:
                report._note(report.outlets, record["slug"], outcome)
                continue
        report.errors.extend(errors)
        slug = record.get("slug") if isinstance(record, dict) else None
        if isinstance(slug, str):
            rejected_outlets[slug] = ref

    for index, record in enumerate(data.get("stories", [])):
        ref = f"stories[{index}]"
        if ref in by_record:
            report.errors.extend(by_record[ref])
            continue
        try:
            with session.begin_nested():
                outcome, outlet_outcomes = _import_story(
                    session, record, ref, index, now, rejected_outlets
                )
                session.flush()
        except _Rejected as exc:
            report.errors.extend(exc.errors)
        except IntegrityError:
            report.errors.append(
                RecordError(ref, index, record["external_id"], ref, _CONFLICT_REASON)
            )
        else:
            report._note(report.stories, record["external_id"], outcome)
            for slug, outlet_outcome in outlet_outcomes:
                report._note(report.outlets, slug, outlet_outcome)
    return report


def load_json_file(path: str) -> object:
    """Read and parse an import file ("-" for standard input), or `InvalidInput`."""
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise InvalidInput(f"Cannot read {path}: {exc.strerror or exc}.") from None
    try:
        return parse_json(raw)
    except InvalidInput as exc:
        raise InvalidInput(f"{path}: {exc.message}") from None
