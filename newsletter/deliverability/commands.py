"""`newsletter bounces fetch` and `newsletter deliverability check`: thin, the services
(`mailbox`, `dnscheck`) do the work."""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import with_appcontext

from newsletter.errors import NewsletterError


@click.group("bounces", help="The bounce mailbox.")
def bounces_group() -> None:
    pass


@bounces_group.command("fetch", help="Read the bounce mailbox (BOUNCE_IMAP_URL) once.")
@with_appcontext
def bounces_fetch() -> None:
    from newsletter.deliverability.mailbox import fetch_bounces

    try:
        summary = fetch_bounces(current_app._get_current_object())  # type: ignore[attr-defined]
    except NewsletterError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    for line in summary.outcomes:
        click.echo(f"  {line}")
    click.echo(summary.describe())


@click.group("deliverability", help="Whether receiving servers will trust our mail.")
def deliverability_group() -> None:
    pass


@deliverability_group.command(
    "check", help="Look up SPF, DKIM, DMARC and the bounce domain in DNS; exit 1 on a problem."
)
@with_appcontext
def deliverability_check() -> None:
    from newsletter.deliverability.dnscheck import check_dns

    try:
        findings = check_dns(current_app.config, current_app.extensions.get("dkim"))
    except NewsletterError as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    for finding in findings:
        click.echo(f"{'ok     ' if finding.ok else 'PROBLEM'}  {finding.what}: {finding.says}")
    problems = [f for f in findings if not f.ok]
    if problems:
        click.echo(f"{len(problems)} problem(s): receiving servers may reject or junk our mail.")
        sys.exit(1)
    click.echo("Everything checks out.")
