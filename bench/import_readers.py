"""Import a Mailchimp-shaped export of N readers: the bulk import against row by row.

    .venv/bin/python bench/import_readers.py [--rows 100000] [--baseline-rows 10000]
                                             [--database-url URL] [--wipe]

1. Setup (not timed): a scratch database (SQLite in a temporary directory by default;
   `--database-url` for PostgreSQL, whose schema is dropped and made again), and a CSV of
   `--rows` rows, half with a CONFIRM_TIME (imported confirmed, with a consent record),
   half without (imported pending, queued for the opt-in email).
2. Bulk: `newsletter.readers.importing.import_readers` on the whole file, committed, as
   `newsletter readers import` runs it.
3. Baseline, in the same run and the same database (emptied first): the same rows the
   way a first version would write them, one at a time through the ORM: look the
   address up, add the reader, flush, add the consent, flush. Run on the first
   `--baseline-rows` rows (row by row is slow); the figure compared is rows per second.
4. Checks: the database holds every reader and consent the file implies.

Target: 100,000 rows well under a minute. Prints one line per figure, the ratio last.
"""

from __future__ import annotations

import argparse
import io
import time
from typing import Any

from common import BenchError, bench_app, say, scratch_database
from sqlalchemy import delete, func, select

MAILCHIMP_HEADER = "Email Address,First Name,OPTIN_TIME,OPTIN_IP,CONFIRM_TIME,CONFIRM_IP,TIMEZONE"


def export_file(rows: int) -> bytes:
    lines = [MAILCHIMP_HEADER]
    for n in range(rows):
        confirm = "2024-03-02 10:11:12" if n % 2 else ""
        lines.append(
            f"reader{n}@example{n % 97}.com,Reader {n},2024-03-01 09:00:00,192.0.2.{n % 250},"
            f"{confirm},198.51.100.{n % 250},Europe/Paris"
        )
    return ("\n".join(lines) + "\n").encode()


def bulk(app: Any, data: bytes) -> float:
    from newsletter.readers.importing import import_readers

    with app.app_context(), app.extensions["db"].session() as session:
        started = time.perf_counter()
        report = import_readers(session, io.BytesIO(data), filename="bench.csv")
        session.commit()
        seconds = time.perf_counter() - started
    if report.rejected:
        raise BenchError(f"rows were rejected: {report.reasons.most_common(3)}")
    return seconds


def row_by_row(app: Any, data: bytes, limit: int) -> float:
    """The same rows, one ORM insert and flush each: the baseline."""
    import csv

    from newsletter.readers.importing import PLATFORMS, Platform
    from newsletter.readers.models import Consent, ConsentKind, Reader, ReaderStatus
    from newsletter.readers.services import find_reader, normalize_email

    mapper = PLATFORMS[Platform.MAILCHIMP].mapper
    rows = list(csv.DictReader(io.StringIO(data.decode())))[:limit]
    with app.app_context(), app.extensions["db"].session() as session:
        started = time.perf_counter()
        for row in rows:
            mapped = mapper(row)
            email = normalize_email(mapped.email)
            if find_reader(session, email) is not None:
                continue
            reader = Reader(
                email=email,
                email_key=email.lower(),
                timezone=mapped.timezone or "UTC",
                status=ReaderStatus.CONFIRMED if mapped.documented else ReaderStatus.PENDING,
                consent_at=mapped.consent_at if mapped.documented else None,
            )
            session.add(reader)
            session.flush()
            if mapped.documented:
                session.add(Consent(reader=reader, kind=ConsentKind.IMPORT, ip=mapped.ip))
                session.flush()
        session.commit()
        return time.perf_counter() - started


def counts(app: Any) -> tuple[int, int]:
    from newsletter.readers.models import Consent, Reader

    with app.extensions["db"].session() as session:
        return (
            session.scalar(select(func.count()).select_from(Reader)) or 0,
            session.scalar(select(func.count()).select_from(Consent)) or 0,
        )


def empty(app: Any) -> None:
    from newsletter.readers.models import Consent, Reader

    with app.extensions["db"].session() as session:
        session.execute(delete(Consent))
        session.execute(delete(Reader))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000, help="default: 100000")
    parser.add_argument("--baseline-rows", type=int, default=10_000, help="default: 10000")
    parser.add_argument("--database-url", help="default: a temporary SQLite database")
    parser.add_argument("--wipe", action="store_true", help="allow wiping --database-url")
    args = parser.parse_args()
    data = export_file(args.rows)
    with scratch_database(args.database_url, wipe=args.wipe) as url:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
            app = bench_app(url, tmp)
            bulk_seconds = bulk(app, data)
            readers, consents = counts(app)
            if (readers, consents) != (args.rows, args.rows // 2):
                raise BenchError(f"bulk import wrote {readers} readers, {consents} consents")
            empty(app)
            base_n = min(args.baseline_rows, args.rows)
            base_seconds = row_by_row(app, data, base_n)
            readers, _ = counts(app)
            if readers != base_n:
                raise BenchError(f"row by row wrote {readers} readers, expected {base_n}")
            app.extensions["db"].dispose()
    backend = "PostgreSQL" if url.startswith("postgresql") else "SQLite"
    bulk_rate = args.rows / bulk_seconds
    base_rate = base_n / base_seconds
    say(f"import_readers: {args.rows} Mailchimp rows on {backend}, half confirmed")
    say(f"import_readers: bulk {bulk_seconds:.1f} s ({bulk_rate:.0f} rows/s)")
    say(
        f"import_readers: row by row {base_n} rows in {base_seconds:.1f} s ({base_rate:.0f} rows/s)"
    )
    say(f"import_readers: ratio {bulk_rate / base_rate:.1f}x rows/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
