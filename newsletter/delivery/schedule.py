"""Local time for delivery: each reader's date and hour come from their IANA zone.

Times are stored in UTC; a reader's zone is used only here, to turn an instant into
"their date and hour" (zoneinfo handles DST: a missing or repeated local hour is just
what the clock shows at that instant).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.readers.models import Reader, ReaderStatus

log = logging.getLogger(__name__)

# assemble_ahead makes the edition of every local date starting within this window.
AHEAD = timedelta(hours=2)


@lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        # Zones are validated at input; one removed from tzdata since falls back to UTC.
        log.warning("unknown time zone %r, using UTC", name)
        return ZoneInfo("UTC")


def local_time(tz_name: str, now: datetime) -> datetime:
    return now.astimezone(zone(tz_name))


def delivery_instant(tz_name: str, day: date, hour: int) -> datetime:
    """When `hour`:00 on local `day` is, in UTC. An hour skipped by a DST change counts
    as the first instant after the gap; a repeated one as its first occurrence."""
    tz = zone(tz_name)
    local = datetime.combine(day, time(hour), tz)
    # Round-trip: a time inside a spring-forward gap maps to just after it.
    return local.astimezone(UTC).astimezone(tz).astimezone(UTC)


def first_delivery(tz_name: str, hour: int, confirmed_at: datetime) -> datetime:
    """The first delivery a reader confirmed at `confirmed_at` gets: their next local
    delivery hour at or after it (confirming at 21:55 with a 06:00 hour: tomorrow 06:00,
    not the edition of the day that is ending)."""
    day = local_time(tz_name, confirmed_at).date()
    slot = delivery_instant(tz_name, day, hour)
    if slot < confirmed_at:
        slot = delivery_instant(tz_name, day + timedelta(days=1), hour)
    return slot


def due_on(tz_name: str, hour: int, confirmed_at: datetime | None, day: date) -> bool:
    """Whether the edition of local `day` is one the reader is owed: its delivery time
    comes at or after they confirmed (readers confirmed before records began: always)."""
    return confirmed_at is None or delivery_instant(tz_name, day, hour) >= confirmed_at


def same_local_day(tz_name: str, a: datetime, b: datetime) -> bool:
    return local_time(tz_name, a).date() == local_time(tz_name, b).date()


def reader_zones(session: Session) -> list[str]:
    """The distinct time zones of confirmed readers."""
    return list(
        session.scalars(
            select(Reader.timezone).where(Reader.status == ReaderStatus.CONFIRMED).distinct()
        )
    )


def local_slots(session: Session, now: datetime) -> dict[date, list[tuple[str, int]]]:
    """Local date -> [(zone, local hour)] at `now`, over the zones of confirmed readers."""
    slots: dict[date, list[tuple[str, int]]] = defaultdict(list)
    for tz in reader_zones(session):
        local = local_time(tz, now)
        slots[local.date()].append((tz, local.hour))
    return dict(slots)


def dates_starting_soon(session: Session, now: datetime, within: timedelta = AHEAD) -> set[date]:
    """The local dates that start within `within` of `now` in some reader's zone."""
    days: set[date] = set()
    for tz in reader_zones(session):
        soon = local_time(tz, now + within).date()
        if soon != local_time(tz, now).date():
            days.add(soon)
    return days
