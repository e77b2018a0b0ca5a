"""Render an edition once per variant, then personalize 10,000 messages in process.

    .venv/bin/python bench/render.py [--messages 10000] [--database-url URL]

1. Loads the 44 demo stories into a throwaway SQLite database (or `--database-url`,
   whose schema is dropped and made again) and assembles today's 10-story edition,
   timing the rendering of its variants (Jinja + MJML + premailer, once per plan)
   apart from the database work around it. Target: variants in <= 250 ms.
2. Personalizes `--messages` messages with `EditionMessages.render` (per reader: a
   Message-ID, an unsubscribe token, ten signed links, filled into pre-built bytes).
3. Baseline, same run: the same messages, same size and content (checked), built the
   usual way with `email.message.EmailMessage` (headers, `set_content(text)`,
   `add_alternative(html)`, `as_bytes`). The per-reader values are made by the same
   fast code for both, so the ratio measures message building alone.
   Target: personalization >= 20x faster than the baseline.

Prints one line per figure, the ratio last.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

from common import BenchError, bench_app, build_edition, ms, say, scratch_database
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from newsletter.billing.entitlement import Plan
from newsletter.editions.models import Edition, EditionStory
from newsletter.editions.personalize import EditionMessages, Recipient
from newsletter.mail.message import Hole, now_header
from newsletter.readers.services import unsubscribe_url_for
from newsletter.tokens import Purpose, read_token

RENDER_TARGET_SECONDS = 0.250
RATIO_TARGET = 20.0
ROUNDS = 3  # personalization passes; the median is reported (the baseline runs once)
PLANS = (Plan.FREE, Plan.TRIAL, Plan.PAID)


def recipients(count: int) -> list[Recipient]:
    """Readers of every plan, with ids and addresses of realistic sizes."""
    return [
        Recipient(
            reader_id=100_000 + n,
            email=f"reader.{100_000 + n}@example.com",
            plan=PLANS[n % 3],
            free_left=n % 11,
            trial_days_left=n % 8,
        )
        for n in range(count)
    ]


def reader_values(messages: EditionMessages, recipient: Recipient, date: str) -> dict[str, str]:
    """The values `EditionMessages.render` fills in, made by the same code."""
    rid = recipient.reader_id
    values = {
        "to": recipient.email,
        "date": date,
        "message_id": messages.message_id(rid),
        "free_left": str(recipient.free_left),
        "trial_days_left": str(recipient.trial_days_left),
        "unsubscribe_url": messages.unsubscribe_url(rid),
    }
    for name, story_id in messages.links:
        values[name] = messages.link_base + messages.signer.sign(rid, messages.edition_id, story_id)
    return values


class Baseline:
    """The same message built per reader with the standard library's `EmailMessage`."""

    def __init__(self, app: Any, edition: Edition, messages: EditionMessages) -> None:
        self.messages = messages
        self.mail_from = app.config["MAIL_FROM"]
        self.list_id = app.config["LIST_ID"]
        self.variants = {v.plan: v for v in edition.variants}

    def build(self, recipient: Recipient, date: str) -> bytes:
        values = reader_values(self.messages, recipient, date)
        variant = self.variants[recipient.plan]

        def fill(body: tuple[str | Hole, ...]) -> str:
            return "".join(p if isinstance(p, str) else values[p.name] for p in body)

        msg = EmailMessage()
        msg["From"] = self.mail_from
        msg["To"] = recipient.email
        msg["Subject"] = variant.subject
        msg["Date"] = date
        msg["Message-ID"] = values["message_id"]
        msg["MIME-Version"] = "1.0"
        msg["List-Id"] = self.list_id
        msg["List-Unsubscribe"] = f"<{values['unsubscribe_url']}>"
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        # Quoted-printable like ours (same size); left to choose, `set_content` would
        # encode each part both ways to pick the shorter, which would slow it further.
        msg.set_content(fill(variant.text_body), cte="quoted-printable")
        msg.add_alternative(fill(variant.html_body), subtype="html", cte="quoted-printable")
        return msg.as_bytes(policy=policy.SMTP)


def same_content(ours: bytes, theirs: bytes) -> None:
    """Both messages decode to the same headers and parts (not the same bytes: the
    encodings and the boundary differ)."""
    a, b = (BytesParser(policy=policy.default).parsebytes(m) for m in (ours, theirs))
    for header in ("From", "To", "Subject", "Message-ID", "List-Unsubscribe"):
        if str(a[header]) != str(b[header]):
            raise AssertionError(f"{header} differs: {a[header]!r} vs {b[header]!r}")
    for kind in ("plain", "html"):
        ours_part = a.get_body((kind,)).get_content().replace("\r\n", "\n").rstrip()
        theirs_part = b.get_body((kind,)).get_content().replace("\r\n", "\n").rstrip()
        if ours_part != theirs_part:
            raise AssertionError(f"the {kind} parts differ")


def warm_render_seconds(edition: Edition, rounds: int = 5) -> float:
    """Median time to render every variant again in this process: what each later
    edition costs a long-running worker (templates compiled, CSS machinery warm)."""
    from newsletter.editions.rendering import Markers, edition_context
    from newsletter.mail.render import render_email
    from newsletter.stories.coverage import coverage

    items = [(entry.story, coverage(entry.story)) for entry in edition.stories]
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        for variant in edition.variants:
            context = edition_context(edition, items, variant.plan, Markers([]))
            render_email("edition", context)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def check_tokens(messages: EditionMessages, recipient: Recipient) -> None:
    """The unsubscribe URL is the slow path's, byte for byte, and the route's reader
    accepts it; every story link verifies to this reader (call in an app context)."""
    rid = recipient.reader_id
    url = messages.unsubscribe_url(rid)
    if url != unsubscribe_url_for(rid, base_url=messages.base_url, secret=messages.secret):
        raise AssertionError("the unsubscribe URL differs from unsubscribe_url_for")
    if read_token(Purpose.UNSUBSCRIBE, url.rsplit("/", 1)[1], max_age=None) != {"r": rid}:
        raise AssertionError("the unsubscribe token does not read back")
    for _, story_id in messages.links:
        token = messages.signer.sign(rid, messages.edition_id, story_id)
        if messages.signer.verify(token).reader_id != rid:
            raise AssertionError("a tracked link does not verify")


def time_pass(
    build: Callable[[Recipient, str], Any], readers: list[Recipient]
) -> tuple[float, int]:
    """Seconds for building every reader's message, and the bytes built (not kept:
    10,000 messages of 60 KB would be 600 MB)."""
    size = 0
    started = time.perf_counter()
    for recipient in readers:
        size += len(build(recipient, now_header()))
    return time.perf_counter() - started, size


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=10_000, help="default: 10000")
    parser.add_argument(
        "--database-url", help="default: a throwaway SQLite file (a PostgreSQL URL is wiped)"
    )
    parser.add_argument("--wipe", action="store_true", help="allow wiping --database-url")
    args = parser.parse_args()

    with (
        tempfile.TemporaryDirectory(prefix="bench-render-") as tmp,
        scratch_database(args.database_url, wipe=args.wipe) as url,
    ):
        app = bench_app(url, tmp)
        built = build_edition(app)
        db_seconds = built.assemble_seconds - built.render_seconds
        with app.app_context(), app.extensions["db"].session() as session:
            edition = session.scalars(
                select(Edition)
                .where(Edition.id == built.edition_id)
                .options(
                    selectinload(Edition.stories).selectinload(EditionStory.story),
                    selectinload(Edition.variants),
                )
            ).one()
            warm = warm_render_seconds(edition)
            started = time.perf_counter()
            messages = EditionMessages(app, edition)
            compose_seconds = time.perf_counter() - started
            baseline = Baseline(app, edition, messages)
            readers = recipients(args.messages)

            # Same content, checked for one reader of each plan before timing anything.
            date = now_header()
            for recipient in readers[:3]:
                same_content(messages.render(recipient, date)[1], baseline.build(recipient, date))
                check_tokens(messages, recipient)

            ours_build = lambda r, d: messages.render(r, d)[1]  # noqa: E731
            ours = sorted(time_pass(ours_build, readers) for _ in range(ROUNDS))
            ours_seconds, ours_size = ours[ROUNDS // 2]
            base_seconds, base_size = time_pass(baseline.build, readers)
        app.extensions["db"].dispose()

    n = args.messages
    per_ours = ours_seconds / n * 1e6
    per_base = base_seconds / n * 1e6
    ratio = per_base / per_ours
    backend = "SQLite" if args.database_url is None else "PostgreSQL"
    render_ok = "met" if built.render_seconds <= RENDER_TARGET_SECONDS else "MISSED"
    ratio_ok = "met" if ratio >= RATIO_TARGET else "MISSED"
    say(
        f"render: edition of {built.stories} stories, {built.variants} variants on {backend}; "
        f"assemble {ms(built.assemble_seconds)} = database work {ms(db_seconds)} "
        f"+ rendering {ms(built.render_seconds)}"
    )
    say(
        f"render: variants {ms(built.render_seconds)} first in this process, CPU "
        f"{ms(built.render_cpu_seconds)} (target <= 250 ms: {render_ok}); {ms(warm)} warm "
        f"(median of 5); compose {ms(compose_seconds)}"
    )
    say(
        f"render: message {ours_size / n / 1024:.1f} KB vs baseline "
        f"{base_size / n / 1024:.1f} KB, same headers and parts (checked); "
        f"{n} messages, median of {ROUNDS} passes; target >= {RATIO_TARGET:.0f}x: {ratio_ok}"
    )
    say(
        f"render: variants {ms(built.render_seconds)}; personalize {per_ours:.0f} µs/msg "
        f"vs baseline {per_base:.0f} µs/msg, ratio {ratio:.1f}"
    )
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
