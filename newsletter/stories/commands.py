"""`newsletter stories import FILE` and `newsletter demo`: thin, they call the services."""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from newsletter.db import get_db
from newsletter.errors import InvalidInput
from newsletter.stories.importing import ImportReport, Outcome, import_stories, load_json_file


def _counts(outcomes: dict[Outcome, int]) -> str:
    return ", ".join(f"{n} {outcome.value}" for outcome, n in outcomes.items())


def echo_report(report: ImportReport, *, list_ids: bool = True) -> None:
    """What was created, updated and rejected, with reasons, for a person to act on."""
    click.echo(f"stories: {_counts({o: len(report.stories_with(o)) for o in Outcome})}")
    click.echo(f"outlets: {_counts({o: len(report.outlets_with(o)) for o in Outcome})}")
    if list_ids:
        for label, ids in (("created", report.created), ("updated", report.updated)):
            if ids:
                click.echo(f"{label}: {', '.join(ids)}")
    if not report.errors:
        return
    if any(error.record is None for error in report.errors):
        click.echo("rejected the whole document, nothing was imported:")
        for error in report.errors:
            click.echo(f"  {error}")
        return
    count = len(report.rejected)
    click.echo(f"rejected {count} record{'' if count == 1 else 's'}:")
    for record in report.rejected:
        errors = [e for e in report.errors if e.record == record]
        click.echo(f"  {record}" + (f" ({errors[0].id})" if errors[0].id else "") + ":")
        for error in errors:
            click.echo(f"    {error}")


@click.group("stories", help="Stories and outlets.")
def stories_group() -> None:
    pass


@stories_group.command("import", help="Import outlets and stories from a JSON file ('-': stdin).")
@click.argument("file")
@with_appcontext
def stories_import(file: str) -> None:
    try:
        data = load_json_file(file)
    except InvalidInput as exc:
        click.echo(f"error: {exc.message}", err=True)
        sys.exit(1)
    # The session commits what was accepted; rejected records wrote nothing.
    with get_db().session() as session:
        report = import_stories(session, data)
    echo_report(report)
    if report.errors:
        sys.exit(1)


@click.command("demo", help="Load the fictional demo outlets and stories (safe to run twice).")
@with_appcontext
def demo() -> None:
    from newsletter.stories.demo import load_demo

    with get_db().session() as session:
        report = load_demo(session)
    echo_report(report, list_ids=False)
