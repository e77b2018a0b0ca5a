"""Time-zone names: the canonical IANA name for any accepted name, and the picker's list.

Canonical names are those of tzdata's `zone.tab` (one per country region, e.g.
`Asia/Kolkata`, `Europe/Amsterdam`) plus `UTC`. Every other name zoneinfo knows (old
aliases such as `Asia/Calcutta` or `US/Eastern`, which browsers still report) is mapped by
following tzdata's links, read from the same data zoneinfo uses: no hand-kept list.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from pathlib import Path
from zoneinfo import TZPATH, ZoneInfo, available_timezones


def _tzdata_file(name: str) -> str:
    """A file of the tzdata package (what zoneinfo reads when the system has no zone
    files), else of the first system zoneinfo directory that has it."""
    try:
        return (resources.files("tzdata.zoneinfo") / name).read_text(encoding="utf-8")
    except (ModuleNotFoundError, FileNotFoundError):
        for base in TZPATH:
            path = Path(base) / name
            if path.is_file():
                return path.read_text(encoding="utf-8")
    return ""


@lru_cache(maxsize=1)
def canonical_names() -> frozenset[str]:
    names = {"UTC"}
    for line in _tzdata_file("zone.tab").splitlines():
        if line and not line.startswith("#"):
            parts = line.split("\t")
            if len(parts) >= 3:
                names.add(parts[2].strip())
    return frozenset(names & (available_timezones() | {"UTC"}))


@lru_cache(maxsize=1)
def _links() -> dict[str, str]:
    """alias -> target, from the `L target alias` lines of tzdata.zi."""
    links: dict[str, str] = {}
    for line in _tzdata_file("tzdata.zi").splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0] == "L":
            links[parts[2]] = parts[1]
    return links


@lru_cache(maxsize=1)
def alias_map() -> dict[str, str]:
    """Every known non-canonical name -> the canonical name it stands for."""
    canonical = canonical_names()
    links = _links()
    mapped: dict[str, str] = {}
    for name in available_timezones() - canonical:
        target, seen = name, {name}
        while target not in canonical and target in links and links[target] not in seen:
            target = links[target]
            seen.add(target)
        if target in {"Etc/UTC", "Etc/UCT", "Etc/Universal", "Etc/Zulu"}:
            target = "UTC"
        if target != name:
            mapped[name] = target
    return mapped


def canonical(name: str | None) -> str | None:
    """The canonical name for `name` if zoneinfo knows it (case as IANA spells it), else
    None."""
    value = (name or "").strip()
    if not value or len(value) > 64:
        return None
    if value in canonical_names():
        return value
    if value in alias_map():
        return alias_map()[value]
    if value in _known():
        return value  # a zone of its own outside zone.tab (e.g. Etc/GMT+5)
    return None


@lru_cache(maxsize=1)
def _known() -> frozenset[str]:
    return frozenset(available_timezones())


def utc_offset_label(name: str, now: datetime | None = None) -> str:
    offset = (now or datetime.now(UTC)).astimezone(ZoneInfo(name)).utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset else 0
    sign = "+" if minutes >= 0 else "-"
    hours, mins = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{mins:02d}"


@dataclass(frozen=True)
class ZoneChoice:
    name: str  # the canonical IANA name, the option's value
    label: str  # e.g. "Kolkata (UTC+05:30)"


def grouped_choices(now: datetime | None = None) -> list[tuple[str, list[ZoneChoice]]]:
    """The picker: regions in alphabetical order (UTC first), places by name, each with
    its current UTC offset."""
    moment = now or datetime.now(UTC)
    groups: dict[str, list[ZoneChoice]] = {}
    for name in canonical_names():
        region, _, place = name.partition("/")
        if not place:
            region, place = "UTC", name
        label = f"{place.replace('_', ' ')} ({utc_offset_label(name, moment)})"
        groups.setdefault(region, []).append(ZoneChoice(name, label))
    order = sorted(groups, key=lambda region: (region != "UTC", region))
    return [(region, sorted(groups[region], key=lambda c: c.label)) for region in order]


def local_time_label(moment: datetime, zone: str | None) -> str:
    """'Dec 02, 14:00 UTC' in `zone` (canonical or alias), UTC when unknown; the zone's
    abbreviation, else its offset, says which clock it is."""
    name = canonical(zone) or "UTC"
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    local = aware.astimezone(ZoneInfo(name))
    abbreviation = local.strftime("%Z")
    if not abbreviation or abbreviation[0] in "+-":
        abbreviation = utc_offset_label(name, aware)
    return f"{local.strftime('%b %d, %H:%M')} {abbreviation}"
