"""The suppression list staff see: every suppressed reader with the reason, the
evidence (the report that suppressed them, when one did) and the date; searchable and
exportable as CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.orm import Session, aliased

from newsletter.deliverability.models import ReceivedReport
from newsletter.readers.models import Reader

PAGE = 100


@dataclass(frozen=True)
class SuppressedReader:
    reader_id: int
    email: str
    reason: str
    detail: str
    since: datetime | None
    source: str | None  # the report that suppressed them, when a report did
    report_id: str | None
    diagnostic: str | None


def _query(query: str) -> Any:
    evidence = aliased(ReceivedReport)
    stmt = (
        select(Reader, evidence)
        .outerjoin(evidence, and_(evidence.reader_id == Reader.id, evidence.suppressed))
        .where(Reader.suppression.is_not(None))
        .order_by(Reader.suppressed_at.desc(), Reader.id.desc(), evidence.id.desc())
    )
    q = query.strip().lower()
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(Reader.email_key.like(f"%{escaped}%", escape="\\"))
    return stmt


def suppressed_readers(
    session: Session, query: str = "", *, limit: int | None = PAGE
) -> Iterator[SuppressedReader]:
    """Newest first; one row per reader (the latest evidence when several reports did)."""
    stmt = _query(query)
    seen: set[int] = set()
    result = session.execute(stmt.execution_options(yield_per=500))
    for row in result:
        reader, report = row[0], row[1]
        if reader.id in seen:
            continue
        seen.add(reader.id)
        if limit is not None and len(seen) > limit:
            break
        assert reader.suppression is not None
        yield SuppressedReader(
            reader.id,
            reader.email,
            reader.suppression.value,
            reader.suppressed_reason or "",
            reader.suppressed_at,
            report.source if report is not None else None,
            report.event_id if report is not None else None,
            report.diagnostic if report is not None else None,
        )


CSV_COLUMNS = ["email", "reason", "detail", "suppressed_at", "source", "report_id", "diagnostic"]


def _cell(value: object) -> str:
    """A CSV cell a spreadsheet shows as text: never a formula."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


def csv_rows(rows: Iterator[SuppressedReader]) -> Iterator[str]:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for row in rows:
        writer.writerow(
            [
                _cell(v)
                for v in (
                    row.email,
                    row.reason,
                    row.detail,
                    row.since.isoformat() if row.since else "",
                    row.source,
                    row.report_id,
                    row.diagnostic,
                )
            ]
        )
        if buffer.tell() > 64 * 1024:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()
