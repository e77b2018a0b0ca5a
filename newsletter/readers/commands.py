"""`newsletter readers import FILE.csv` and `newsletter readers export [FILE]`: thin."""

from __future__ import annotations

import sys

import click
from flask.cli import with_appcontext

from newsletter.admin.services import audit_as
from newsletter.db import get_db
from newsletter.errors import InvalidInput
from newsletter.readers.importing import (
    SOURCES,
    ImportReport,
    Platform,
    import_readers,
    safe_filename,
)

CLI_ACTOR = "command line"
REJECTIONS_SHOWN = 50


def echo_import_report(report: ImportReport) -> None:
    click.echo(report.summary())
    for reason, n in report.reasons.most_common():
        click.echo(f"  rejected {n}: {reason}")
    for rejection in report.rejections[:REJECTIONS_SHOWN]:
        click.echo(
            f"  line {rejection.line}: {rejection.email or '(no address)'}: {rejection.reason}"
        )
    if report.rejected > REJECTIONS_SHOWN:
        click.echo(f"  ... and {report.rejected - REJECTIONS_SHOWN} more")


@click.group("readers", help="Readers: lists in and out.")
def readers_group() -> None:
    pass


@readers_group.command("import", help="Import readers from a CSV export of another platform.")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--source", type=click.Choice(SOURCES), default="auto", show_default=True)
@with_appcontext
def readers_import(file: str, source: str) -> None:
    platform = None if source == "auto" else Platform(source)
    try:
        with open(file, "rb") as stream, get_db().session() as session:
            report = import_readers(session, stream, filename=file, platform=platform)
            audit_as(session, CLI_ACTOR, "readers.import", safe_filename(file), report.summary())
    except OSError as exc:
        click.echo(f"error: cannot read {file}: {exc.strerror}", err=True)
        sys.exit(1)
    except InvalidInput as exc:
        click.echo(f"error: {exc.message} Nothing was imported.", err=True)
        sys.exit(1)
    echo_import_report(report)


@readers_group.command("export", help="Write every reader as CSV to FILE ('-' or none: stdout).")
@click.argument("file", default="-", type=click.Path(dir_okay=False, allow_dash=True))
@with_appcontext
def readers_export(file: str) -> None:
    from newsletter.readers.exporting import export_csv

    db = get_db()
    with db.session() as session:
        audit_as(session, CLI_ACTOR, "readers.export", "" if file == "-" else safe_filename(file))
    with click.open_file(file, "w", encoding="utf-8") as out, db.session() as session:
        for chunk in export_csv(session):
            out.write(chunk)
