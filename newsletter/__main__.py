"""The `newsletter` command (also `python -m newsletter`): Flask's CLI group around the
app factory. The commands themselves are defined in `newsletter.cli`."""

from __future__ import annotations

import sys

import click
from flask import Flask
from flask.cli import FlaskGroup

from newsletter import logs
from newsletter.app import create_app
from newsletter.errors import NewsletterError


def _create_app() -> Flask:
    try:
        app = create_app()
        logs.configure(app.config["LOG_FORMAT"])
        return app
    except NewsletterError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)


main = FlaskGroup(create_app=_create_app, help="Both Sides Daily.")

if __name__ == "__main__":
    main()
