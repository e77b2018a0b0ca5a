"""The `newsletter` command's commands, added to the app by `register_commands`. Commands
are thin; services do the work."""

from __future__ import annotations

import sys

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from newsletter.db import get_db
from newsletter.errors import NewsletterError


def register_commands(app: Flask) -> None:
    app.cli.add_command(db_group)
    app.cli.add_command(staff_group)
    app.cli.add_command(worker)
    from newsletter.stories.commands import demo, stories_group

    app.cli.add_command(stories_group)
    app.cli.add_command(demo)
    from newsletter.delivery.commands import edition_group

    app.cli.add_command(edition_group)
    from newsletter.billing.commands import stripe_group

    app.cli.add_command(stripe_group)
    from newsletter.feeds.commands import feeds_group, outlets_group

    app.cli.add_command(feeds_group)
    app.cli.add_command(outlets_group)
    from newsletter.deliverability.commands import bounces_group, deliverability_group

    app.cli.add_command(bounces_group)
    app.cli.add_command(deliverability_group)
    from newsletter.readers.commands import readers_group

    app.cli.add_command(readers_group)
    from newsletter.dev.commands import dev_stripe

    app.cli.add_command(dev_stripe)


@click.group("db", help="Database schema.")
def db_group() -> None:
    pass


@db_group.command("upgrade", help="Apply Alembic migrations up to the newest.")
@with_appcontext
def db_upgrade() -> None:
    from newsletter.migrate import upgrade

    upgrade(current_app.config["DATABASE_URL"])
    click.echo("database is up to date")


@click.group("staff", help="Staff members.")
def staff_group() -> None:
    pass


@staff_group.command("add", help="Make an existing reader staff.")
@click.argument("email")
@with_appcontext
def staff_add(email: str) -> None:
    from newsletter.readers.services import make_staff

    try:
        with get_db().session() as session:
            reader = make_staff(session, email)
            address = reader.email
    except NewsletterError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    click.echo(f"{address} is now staff")


@click.command("worker", help="Run the scheduler in the foreground.")
@with_appcontext
def worker() -> None:
    from jobs.scheduler import run_worker

    run_worker(current_app._get_current_object())  # type: ignore[attr-defined]
