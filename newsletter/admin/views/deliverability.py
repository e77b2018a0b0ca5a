"""`/admin/deliverability`: bounce and complaint rates per edition and per receiving
domain over 30 days, against the 0.1% and 0.3% lines; the suppression list, searchable,
exportable as CSV (audited), with lift-suppression (audited)."""

from __future__ import annotations

from flask import Response, flash, redirect, render_template, request, url_for

from newsletter.admin import services
from newsletter.admin.charts import rate_bars
from newsletter.admin.views.blueprint import bp, current_staff
from newsletter.db import db_session, utcnow
from newsletter.deliverability.rates import domain_rates, edition_rates
from newsletter.deliverability.suppressions import csv_rows, suppressed_readers
from newsletter.errors import InvalidInput, NotFound
from newsletter.readers.models import Reader

DAYS = 30
# Gmail's and Yahoo's published bulk-sender lines for spam complaints.
LIMITS = (0.001, 0.003)


@bp.get("/deliverability")
def deliverability():  # type: ignore[no-untyped-def]
    session = db_session()
    now = utcnow()
    query = request.args.get("q", "")[:254]
    editions = edition_rates(session, now, DAYS)
    domains = domain_rates(session, now, DAYS)

    def chart(rows, rate, title):  # type: ignore[no-untyped-def]
        return rate_bars(
            [(r.label, rate(r), f"({r.deliveries} delivered)") for r in rows], LIMITS, title
        )

    return render_template(
        "admin/deliverability.html",
        days=DAYS,
        editions=editions,
        domains=domains,
        edition_complaints=chart(
            editions, lambda r: r.complaint_rate, "Complaint rate per edition"
        ),
        edition_bounces=chart(
            editions, lambda r: r.hard_bounce_rate, "Hard-bounce rate per edition"
        ),
        domain_complaints=chart(domains, lambda r: r.complaint_rate, "Complaint rate per domain"),
        domain_bounces=chart(domains, lambda r: r.hard_bounce_rate, "Hard-bounce rate per domain"),
        query=query,
        suppressed=list(suppressed_readers(session, query)),
    )


# A POST (with the CSRF token): the export is recorded in the audit log, and a GET must
# change nothing.
@bp.post("/deliverability/suppressions.csv")
def suppressions_csv():  # type: ignore[no-untyped-def]
    session = db_session()
    query = request.form.get("q", "")[:254]
    rows = list(suppressed_readers(session, query, limit=None))
    services.audit(
        session,
        current_staff(),
        "deliverability.export",
        "suppression list",
        f"{len(rows)} rows" + (f", search {query!r}" if query else ""),
    )
    session.commit()
    return Response(
        csv_rows(iter(rows)),
        mimetype="text/csv",
        headers={"Content-Disposition": 'attachment; filename="suppressions.csv"'},
    )


@bp.post("/deliverability/suppressions/<int:reader_id>/lift")
def suppression_lift(reader_id: int):  # type: ignore[no-untyped-def]
    session = db_session()
    target = session.get(Reader, reader_id)
    if target is None:
        raise NotFound("No such reader.")
    try:
        was = target.suppression.value if target.suppression else ""
        status = services.unsuppress(session, target)
    except InvalidInput as exc:
        session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("admin.deliverability"), 303)
    services.audit(
        session,
        current_staff(),
        "reader.unsuppress",
        target.email,
        f"was {was}; now {status.value}",
    )
    session.commit()
    flash(f"Suppression lifted: {target.email} is {status.value}.", "ok")
    return redirect(url_for("admin.deliverability"), 303)
