"""The ledger enqueue alone, at two list sizes in one run: does it scale linearly?

    .venv/bin/python bench/enqueue.py [--readers 100000,1000000] [--database-url URL]

For each size: a scratch PostgreSQL database (dropped and migrated again), the demo
stories, today's edition, N confirmed readers (COPY, as `send.py` makes them); then, in
a child process as `newsletter edition send --now` would start it, `enqueue_now` queues
every reader in the ledger and commits. Reported: its time and the child's peak memory
(`ru_maxrss`). The figure is the time ratio of the largest size to the smallest, against
the size ratio (linear: 10x for 100,000 → 1,000,000; target within 12x), and the peak
memory (target <= 300 MB).

`send.py --readers N` times the same step inside a whole delivery; this measures it apart
so that a million readers do not need an hour of SMTP.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

from common import DEFAULT_PG_URL, BenchError, bench_app, build_edition, say, scratch_database
from send import insert_readers

RESULT_MARK = "BENCH-RESULT "
TIME_RATIO_TARGET = 12.0
MEMORY_TARGET_MB = 300


def child(spec: dict[str, Any]) -> None:
    from newsletter.app import create_app
    from newsletter.delivery.ledger import enqueue_now
    from newsletter.editions.models import Edition

    app = create_app(spec["settings"])
    with app.app_context(), app.extensions["db"].session() as session:
        edition = session.get(Edition, spec["edition_id"])
        started = time.perf_counter()
        queued = enqueue_now(session, edition)
        session.commit()
        seconds = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(RESULT_MARK + json.dumps({"seconds": seconds, "queued": queued, "peak_kb": peak_kb}))


def measure(url: str, readers: int, wipe: bool) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory(prefix="bench-enqueue-") as tmp,
        scratch_database(url, wipe=wipe) as scratch,
    ):
        settings = {"DATABASE_URL": scratch, "SECRET_KEY": os.urandom(32).hex()}
        app = bench_app(scratch, tmp, **settings)
        built = build_edition(app)
        started = time.perf_counter()
        insert_readers(app, readers)
        setup = time.perf_counter() - started
        app.extensions["db"].dispose()
        spec = {
            "settings": {**settings, "OUTBOX_DIR": f"{tmp}/outbox"},
            "edition_id": built.edition_id,
        }
        proc = subprocess.run(
            [sys.executable, __file__, "--child"],
            env={**os.environ, "BENCH_ENQUEUE_SPEC": json.dumps(spec)},
            stdout=subprocess.PIPE,
            text=True,
            check=False,
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if proc.returncode != 0 or not lines:
        raise BenchError(f"the enqueue process failed (exit {proc.returncode})")
    result = json.loads(lines[-1][len(RESULT_MARK) :])
    if result["queued"] != readers:
        raise BenchError(f"queued {result['queued']} of {readers} readers")
    result["setup"] = setup
    return result


def main() -> int:
    if "--child" in sys.argv:
        child(json.loads(os.environ["BENCH_ENQUEUE_SPEC"]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--readers", default="100000,1000000", help="sizes, comma-separated")
    parser.add_argument("--database-url", default=DEFAULT_PG_URL, help="wiped for each size")
    parser.add_argument("--wipe", action="store_true", help="allow wiping --database-url")
    args = parser.parse_args()
    sizes = sorted(int(s) for s in args.readers.split(","))
    results = {n: measure(args.database_url, n, args.wipe) for n in sizes}
    for n, r in results.items():
        say(
            f"enqueue: {n} readers queued in {r['seconds']:.1f} s "
            f"({n / r['seconds']:.0f} rows/s), peak {r['peak_kb'] / 1024:.0f} MB "
            f"(readers inserted in {r['setup']:.1f} s, setup)"
        )
    small, large = sizes[0], sizes[-1]
    ratio = results[large]["seconds"] / results[small]["seconds"]
    peak = max(r["peak_kb"] for r in results.values()) / 1024
    ok = ratio <= TIME_RATIO_TARGET * (large / small) / 10 and peak <= MEMORY_TARGET_MB
    say(
        f"enqueue: {large} vs {small} readers: time ratio {ratio:.1f}x for {large / small:.0f}x "
        f"the readers, peak {peak:.0f} MB; targets <= {TIME_RATIO_TARGET:.0f}x (at 10x) and "
        f"<= {MEMORY_TARGET_MB} MB: {'met' if ok else 'MISSED'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
