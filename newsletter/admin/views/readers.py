"""`/admin/readers/…`: search readers, see their facts, resend, suppress, unsuppress."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for

from newsletter.admin import services
from newsletter.admin.views.blueprint import bp, current_staff
from newsletter.db import db_session
from newsletter.errors import InvalidInput, NotFound
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
