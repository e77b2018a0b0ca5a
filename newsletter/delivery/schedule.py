"""Local time for delivery: each reader's date and hour come from their IANA zone.

Times are stored in UTC; a reader's zone is used only here, to turn an instant into
"their date and hour" (zoneinfo handles DST: a missing or repeated local hour is just
what the clock shows at that instant).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import date, datetime, timedelta
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
