"""`newsletter edition assemble` and `newsletter edition send`: thin, services do the work."""

from __future__ import annotations

import sys
import time
from datetime import UTC, date, datetime
from typing import NoReturn

import click
from flask import current_app
from flask.cli import with_appcontext

from newsletter.db import get_db, utcnow
from newsletter.delivery.progress import SendProgress, SendReport
from newsletter.delivery.sender import SendAborted
from newsletter.delivery.services import (
    EditionNotComposed,
    EditionPaused,
    PausedEdition,
    UncomposedEdition,
    deliver_due,
    paused_editions,
    send_now,
    uncomposed_editions,
)
from newsletter.editions.assembly import NoStories, assemble
from newsletter.editions.models import Edition
from newsletter.stories.coverage import coverage
from newsletter.text import plural


def _fail(message: str) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


def _parse_date(raw: str | None) -> date:
    if raw is None:
        return utcnow().date()
    try:
        return date.fromisoformat(raw.strip())
    except ValueError:
        _fail(f"--date must be a date as YYYY-MM-DD, got {raw!r}")


def describe(edition: Edition) -> list[str]:
    """The edition as staff check it: stories in order, their sources and blindspots."""
    minutes, seconds = divmod(edition.reading_seconds, 60)
    lines = [
        f"Edition of {edition.date.isoformat()} ({edition.status.value}): "
        f"{plural(len(edition.stories), 'story')}",
        f"Subject: {edition.subject}",
    ]
    for entry in edition.stories:
        cov = coverage(entry.story)
        flags = f" · blindspot: {cov.blindspot.value}" if cov.blindspot else ""
        lines.append(f"{entry.position + 1:>3}. {entry.story.title}")
        lines.append(
            f"     {plural(cov.source_count, 'outlet')} · Left {cov.left_pct}% · Center "
            f"{cov.center_pct}% · Right {cov.right_pct}%{flags}"
        )
    lines.append(f"Reading time: {minutes} min {seconds:02d} s ({edition.word_count} words)")
    return lines


@click.group("edition", help="The daily edition: assemble it, send it.")
def edition_group() -> None:
    pass


@edition_group.command("assemble", help="Build and freeze the edition of a date.")
@click.option("--date", "date_text", metavar="YYYY-MM-DD", help="Default: today (UTC).")
@with_appcontext
def edition_assemble(date_text: str | None) -> None:
    day = _parse_date(date_text)
    try:
        with get_db().session() as session:
            result = assemble(session, day)
            lines = describe(result.edition)
            if not result.created:
                lines.insert(0, "Already being sent: the edition was left as it was.")
    except NoStories as exc:
        _fail(exc.message)
    click.echo("\n".join(lines))
    if result.edition.compose_error is not None:
        _fail(
            f"the edition cannot be composed: {result.edition.compose_error}; fix it at "
            f"{current_app.config['BASE_URL']}/admin/editions/{result.edition.id}"
        )


class ProgressLine:
    """One line on stderr, rewritten in place (`\\r`), at most five times a second."""

    def __init__(self) -> None:
        self.shown = False
        self.last = 0.0

    def __call__(self, p: SendProgress) -> None:
        if not p.done and time.monotonic() - self.last < 0.2:
            return
        self.last = time.monotonic()
        r = p.report
        total = r.finished + p.remaining
        line = (
            f"sending: {r.finished}/{total} done · sent {r.sent} · retried {r.retried} · "
            f"failed {r.failed} · suppressed {r.suppressed}"
        )
        if not p.done and p.next_at is not None and (p.held_elsewhere or p.retrying):
            wait = max((p.next_at - datetime.now(UTC)).total_seconds(), 0)
            parts = []
            if p.held_elsewhere:
                parts.append(f"{p.held_elsewhere} held by another sender")
            if p.retrying:
                parts.append(f"{p.retrying} waiting to retry")
            line += f" · waiting: {', '.join(parts)} (next in {wait:.0f} s)"
        click.echo("\r" + line.ljust(100), err=True, nl=False)
        self.shown = True

    def close(self) -> None:
        if self.shown:
            click.echo("", err=True)
            self.shown = False


def _echo_counts(report: SendReport) -> None:
    click.echo(f"sent: {report.sent}")
    click.echo(f"retried: {report.retried}")
    click.echo(f"failed: {report.failed}")
    click.echo(f"suppressed: {report.suppressed}")
    click.echo(f"resent after crash: {report.resent_after_crash}")


def _zones(zones: list[str]) -> str:
    return ", ".join(zones) if len(zones) <= 3 else f"{len(zones)} time zones"


@edition_group.command(
    "send",
    help="Deliver the edition: by default to readers whose local delivery time has "
    "come; with --now to every confirmed reader who has not had it. Safe to re-run.",
)
@click.option(
    "--date",
    "date_text",
    metavar="YYYY-MM-DD",
    help="With --now: the edition to send (default: today, UTC). Without: only readers "
    "whose local date it is.",
)
@click.option("--now", "now_flag", is_flag=True, help="Send to every confirmed reader now.")
@with_appcontext
def edition_send(date_text: str | None, now_flag: bool) -> None:
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    progress = ProgressLine()
    missing: list[str] = []
    paused: list[str] = []
    try:
        if now_flag:
            day = _parse_date(date_text)
            try:
                run = send_now(app, day, progress=progress)
            except NoStories as exc:
                _fail(exc.message)
            progress.close()
            click.echo(
                f"edition of {day.isoformat()}: {plural(run.queued, 'reader')} added to the send"
            )
            if run.queued == 0 and run.report.finished == 0:
                click.echo("nothing to send: every confirmed reader has had it")
            report = run.report
        else:
            only = _parse_date(date_text) if date_text else None
            due_run = deliver_due(app, day=only, wait=True, progress=progress)
            progress.close()
            # Paused by staff, or not composable: their readers wait, and this run could
            # not send to them.
            held: list[UncomposedEdition | PausedEdition] = [
                *uncomposed_editions(app),
                *paused_editions(app),
            ]
            paused = [
                p.explain(app.config["BASE_URL"])
                for p in held
                if p.waiting and (only is None or p.day == only)
            ]
            for due in due_run.dates:
                where = f"{due.day.isoformat()} ({_zones(due.timezones)})"
                if due.no_stories:
                    missing.append(f"{where}: readers are due, but {due.no_stories}")
                else:
                    click.echo(f"{where}: {plural(due.queued, 'reader')} queued")
            if not due_run.dates:
                click.echo("no confirmed readers" + (f" on {only.isoformat()}" if only else ""))
            report = due_run.report
    except SendAborted as exc:
        progress.close()
        _echo_counts(exc.report)
        _fail(f"{exc.message}; the rest stays queued, run this again once it is fixed")
    except (EditionPaused, EditionNotComposed) as exc:
        progress.close()
        if exc.report is not None:
            _echo_counts(exc.report)
        _fail(exc.message)
    _echo_counts(report)
    for reason in paused:
        click.echo(f"error: {reason}", err=True)
    if missing:
        _fail("nothing sent for " + "; ".join(missing))
    if paused:
        sys.exit(1)
