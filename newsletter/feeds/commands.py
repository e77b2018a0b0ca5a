"""`newsletter feeds add|list|pause|fetch` and `newsletter outlets ratings import FILE`:
thin, they call the services."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from flask import current_app
from flask.cli import with_appcontext

from newsletter.db import get_db
from newsletter.errors import NewsletterError
from newsletter.feeds import services
from newsletter.feeds.fetching import FetchSettings, fetch_due, fetch_feed
from newsletter.feeds.models import RunOutcome
from newsletter.feeds.ratings import import_ratings
from newsletter.inputs import parse_id

RATINGS_MAX_BYTES = 50 * 1024 * 1024


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(1)


@click.group("feeds", help="Outlets' RSS and Atom feeds.")
def feeds_group() -> None:
    pass


@feeds_group.command("add", help="Add a feed to an outlet (made, unrated, if new).")
@click.argument("outlet")
@click.argument("url")
@click.option("--name", help="The outlet's name, when the outlet is new.")
@with_appcontext
def feeds_add(outlet: str, url: str, name: str | None) -> None:
    try:
        with get_db().session() as session:
            feed, created = services.add_feed(session, outlet, url, outlet_name=name)
            feed_id, slug = feed.id, feed.outlet.slug
    except NewsletterError as exc:
        _fail(exc.message)
    if created:
        click.echo(f"outlet {slug} created (unrated: set its rating in the staff area)")
    click.echo(f"feed {feed_id} added for {slug}: {url.strip()}")


@feeds_group.command("list", help="Every feed with its health.")
@with_appcontext
def feeds_list() -> None:
    with get_db().session() as session:
        rows = services.health(session, services.list_feeds(session))
        if not rows:
            click.echo("no feeds: add one with `newsletter feeds add OUTLET URL`")
        for h in rows:
            f = h.feed
            state = "paused" if f.paused else f"next {f.next_fetch_at:%Y-%m-%d %H:%M}"
            last = f"{f.last_success_at:%Y-%m-%d %H:%M}" if f.last_success_at else "never"
            click.echo(
                f"{f.id}\t{f.outlet.slug}\t{f.url}\t{state}\tlast success {last}\t"
                f"{h.items_per_day:g} items/day\t{h.errors} errors"
                + (f"\tlast error: {f.last_error}" if f.consecutive_errors else "")
            )


@feeds_group.command("pause", help="Stop fetching a feed (--resume to start again).")
@click.argument("feed_id")
@click.option("--resume", is_flag=True, help="Fetch it again.")
@with_appcontext
def feeds_pause(feed_id: str, resume: bool) -> None:
    try:
        with get_db().session() as session:
            feed = services.get_feed(session, parse_id(feed_id, "The feed id"))
            services.set_paused(session, feed, not resume)
    except NewsletterError as exc:
        _fail(exc.message)
    click.echo(f"feed {feed_id} {'resumed' if resume else 'paused'}")


@feeds_group.command("fetch", help="Fetch the due feeds now (or one, with --feed ID).")
@click.option("--feed", "feed_id", help="Fetch this feed now, due or not.")
@with_appcontext
def feeds_fetch(feed_id: str | None) -> None:
    settings = FetchSettings.from_config(current_app.config)
    db = get_db()
    try:
        if feed_id is not None:
            ident = parse_id(feed_id, "The feed id")
            with db.session() as session:
                services.get_feed(session, ident)
            results = [fetch_feed(db, ident, settings)]
        else:
            results = fetch_due(db, settings)
    except NewsletterError as exc:
        _fail(exc.message)
    if not results:
        click.echo("no feed is due")
    for r in results:
        if r.outcome == RunOutcome.ERROR:
            click.echo(f"feed {r.feed_id}: error: {r.error}")
        elif r.outcome == RunOutcome.NOT_MODIFIED:
            click.echo(f"feed {r.feed_id}: not modified")
        else:
            p = r.report
            click.echo(
                f"feed {r.feed_id}: {p.fetched} fetched, {p.new} new, {p.duplicate} duplicate, "
                f"{p.clustered} clustered, {p.new_stories} new stories"
                + (f" ({r.error})" if r.error else "")
            )
    if any(r.outcome == RunOutcome.ERROR for r in results):
        sys.exit(1)


@click.group("outlets", help="Outlets.")
def outlets_group() -> None:
    pass


@outlets_group.group("ratings", help="Outlets' bias and factuality ratings.")
def ratings_group() -> None:
    pass


@ratings_group.command("import", help="Rate outlets from a CSV or JSON Lines file by domain.")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@with_appcontext
def ratings_import(file: Path) -> None:
    try:
        if file.stat().st_size > RATINGS_MAX_BYTES:
            _fail(f"{file} is larger than {RATINGS_MAX_BYTES // (1024 * 1024)} MB")
        text = file.read_bytes().decode("utf-8")
    except OSError as exc:
        _fail(f"cannot read {file}: {exc.strerror}")
    except UnicodeDecodeError:
        _fail(f"{file} is not UTF-8 text")
    with get_db().session() as session:
        report = import_ratings(session, text, label=file.name)
    click.echo(
        f"rows: {report.accepted} accepted, {len(report.rejected)} rejected; "
        f"outlets: {len(report.rated)} rated, {len(report.unchanged)} unchanged, "
        f"{len(report.kept_staff)} kept their staff rating; "
        f"{report.unmatched} accepted rows match no outlet"
    )
    if report.rated:
        click.echo(f"rated: {', '.join(report.rated)}")
    if report.kept_staff:
        click.echo(f"kept staff rating: {', '.join(report.kept_staff)}")
    if report.rejected:
        click.echo(f"rejected {len(report.rejected)} rows:")
        for error in report.rejected:
            click.echo(f"  {error}")
        sys.exit(1)
