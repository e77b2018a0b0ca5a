"""Fixed-window rate limits kept in the database.

The database is the one store every gunicorn worker (and every machine) already shares, so
no extra service is needed. Each hit is one atomic upsert in its own short transaction:
it counts even when the request that made it later fails.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta

from sqlalchemy import Engine, Integer, String, delete
from sqlalchemy.orm import Mapped, mapped_column

from newsletter.db import Base, upsert, utcnow
from newsletter.errors import RateLimited
from newsletter.text import plural


class RateLimitHit(Base):
    __tablename__ = "rate_limit_hits"

    key: Mapped[str] = mapped_column(String(64), primary_key=True)
    window_start: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(default=0)
    expires_at: Mapped[datetime] = mapped_column(index=True)


def _key(scope: str, value: str) -> str:
    # Hashed: the table never holds plain addresses or IPs.
    return hashlib.sha256(f"{scope}:{value}".encode()).hexdigest()


def hit(
    engine: Engine,
    scope: str,
    value: str,
    limit: int,
    seconds: int,
    *,
    now: datetime | None = None,
) -> None:
    """Count one hit; raise `RateLimited` past `limit` hits in the current window."""
    now = now or utcnow()
    epoch = int(now.timestamp())
    window = epoch - epoch % seconds
    stmt = upsert(RateLimitHit, engine).values(
        key=_key(scope, value),
        window_start=window,
        count=1,
        expires_at=now + timedelta(seconds=seconds),
    )
    counted = stmt.on_conflict_do_update(
        index_elements=["key", "window_start"],
        set_={"count": RateLimitHit.count + 1},
    ).returning(RateLimitHit.count)
    with engine.begin() as conn:
        count = conn.execute(counted).scalar_one()
    if count > limit:
        retry_after = window + seconds - epoch
        raise RateLimited(
            f"Too many requests. Please try again in {wait_in_words(retry_after)}.",
            retry_after=retry_after,
        )


def wait_in_words(seconds: int) -> str:
    """How long `Retry-After: seconds` is, for people: seconds under a minute, else
    minutes (rounded up, so trying again then works), with hours past the hour."""
    seconds = max(1, seconds)
    if seconds < 60:
        return plural(seconds, "second")
    hours, minutes = divmod(-(-seconds // 60), 60)
    if not hours:
        return plural(minutes, "minute")
    if not minutes:
        return plural(hours, "hour")
    return f"{plural(hours, 'hour')} and {plural(minutes, 'minute')}"


def prune(engine: Engine, *, now: datetime | None = None) -> int:
    with engine.begin() as conn:
        result = conn.execute(
            delete(RateLimitHit).where(RateLimitHit.expires_at < (now or utcnow()))
        )
    return result.rowcount
