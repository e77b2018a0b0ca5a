"""`/admin/readers/…`: search readers, see their facts, resend, suppress, unsuppress;
import and export lists; erase a reader on their request."""

from __future__ import annotations

from flask import (
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)

from newsletter.admin import services
from newsletter.admin.views.blueprint import bp, current_staff
from newsletter.db import db_session, utcnow
from newsletter.errors import InvalidInput, NotFound
from newsletter.readers.erasure import erase_reader
from newsletter.readers.exporting import export_csv
from newsletter.readers.importing import SOURCES, Platform, import_readers
from newsletter.readers.models import Reader


@bp.get("/readers")
def readers():  # type: ignore[no-untyped-def]
    query = request.args.get("q", "")
    found = services.search_readers(db_session(), query) if query.strip() else []
    return render_template("admin/readers.html", query=query, readers=found)


@bp.get("/readers/<int:reader_id>")
def reader(reader_id: int):  # type: ignore[no-untyped-def]
    facts = services.reader_facts(db_session(), reader_id)
    return render_template("admin/reader.html", facts=facts, r=facts.reader)


def _reader_action(reader_id: int, action: str):  # type: ignore[no-untyped-def]
    session = db_session()
    target = session.get(Reader, reader_id)
    if target is None:
        raise NotFound("No such reader.")
    staff = current_staff()
    try:
        if action == "resend_confirmation":
            sent = services.resend_confirmation(session, target)
            message = (
                f"A new confirmation email is on its way to {target.email}."
                if sent
                else "A confirmation went out a moment ago; try again in a few minutes."
            )
            detail = "sent" if sent else "too soon: not sent"
        elif action == "suppress":
            reason = request.form.get("reason", "")
            services.suppress(session, target, staff, reason)
            message, detail = f"{target.email} gets no more email.", reason
        else:
            status = services.unsuppress(session, target)
            message, detail = f"Suppression lifted: {target.email} is {status.value}.", status.value
    except InvalidInput as exc:
        session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("admin.reader", reader_id=reader_id), 303)
    services.audit(session, staff, f"reader.{action}", target.email, detail)
    session.commit()
    flash(message, "ok")
    return redirect(url_for("admin.reader", reader_id=reader_id), 303)


@bp.post("/readers/<int:reader_id>/resend-confirmation")
def reader_resend(reader_id: int):  # type: ignore[no-untyped-def]
    return _reader_action(reader_id, "resend_confirmation")


@bp.post("/readers/<int:reader_id>/suppress")
def reader_suppress(reader_id: int):  # type: ignore[no-untyped-def]
    return _reader_action(reader_id, "suppress")


@bp.post("/readers/<int:reader_id>/unsuppress")
def reader_unsuppress(reader_id: int):  # type: ignore[no-untyped-def]
    return _reader_action(reader_id, "unsuppress")


# --- lists in and out, and erasure on request --------------------------------------------


@bp.route("/readers/import", methods=["GET", "POST"])
def readers_import():  # type: ignore[no-untyped-def]
    if request.method == "GET":
        return render_template("admin/readers_import.html", sources=SOURCES, report=None)
    upload = request.files.get("file")
    source = request.form.get("source", "auto")
    if upload is None or not upload.filename:
        return _import_error("Choose the CSV file to import.")
    if source not in SOURCES:
        return _import_error("Choose the platform the file comes from, or “auto”.")
    session = db_session()
    platform = None if source == "auto" else Platform(source)
    try:
        report = import_readers(session, upload.stream, filename=upload.filename, platform=platform)
    except InvalidInput as exc:
        session.rollback()
        return _import_error(f"{exc.message} Nothing was imported.")
    services.audit(session, current_staff(), "readers.import", report.filename, report.summary())
    session.commit()
    return render_template("admin/readers_import.html", sources=SOURCES, report=report)


def _import_error(message: str):  # type: ignore[no-untyped-def]
    return (
        render_template("admin/readers_import.html", sources=SOURCES, report=None, error=message),
        400,
    )


@bp.post("/readers/export")
def readers_export():  # type: ignore[no-untyped-def]
    session = db_session()
    services.audit(session, current_staff(), "readers.export", "all readers", "CSV")
    session.commit()
    stamp = utcnow().strftime("%Y%m%d-%H%M")
    response = current_app.response_class(
        stream_with_context(export_csv(session)), mimetype="text/csv"
    )
    response.headers["Content-Disposition"] = f'attachment; filename="readers-{stamp}.csv"'
    response.headers["Cache-Control"] = "no-store"
    return response


@bp.post("/readers/<int:reader_id>/erase")
def reader_erase(reader_id: int):  # type: ignore[no-untyped-def]
    session = db_session()
    target = session.get(Reader, reader_id)
    if target is None:
        raise NotFound("No such reader.")
    if request.form.get("confirm") != "erase":
        flash("Tick the box to confirm: erasing cannot be undone.", "error")
        return redirect(url_for("admin.reader", reader_id=reader_id), 303)
    erase_reader(session, target)
    # Who asked is deliberately not recorded: the entry says only that it happened.
    services.audit(session, current_staff(), "reader.erase", "", "request received by email")
    session.commit()
    flash("The reader's personal data is erased.", "ok")
    return redirect(url_for("admin.reader", reader_id=reader_id), 303)
