"""`/admin/…`: the staff area. Thin: check, call a service, audit, commit.

Everything under /admin answers 404 to anyone who is not signed-in staff, before any
other check (CSRF included), so the area cannot even be discovered. Every POST then
needs the CSRF token.
"""

from __future__ import annotations

from datetime import timedelta

from flask import (
    Blueprint,
    Flask,
    abort,
    current_app,
    flash,
    jsonify,
    redirect,
    render_template,
    request,
    url_for,
)
from sqlalchemy import inspect, select
from sqlalchemy.exc import IntegrityError

from newsletter.admin import charts, dashboard, services
from newsletter.auth.session import current_reader
from newsletter.billing.entitlement import Plan
from newsletter.db import db_session, utcnow
from newsletter.editions.assembly import NoStories, assemble
from newsletter.editions.rendering import CannotCompose
from newsletter.errors import InvalidInput, NotFound
from newsletter.extensions import csrf
from newsletter.inputs import parse_day
from newsletter.mail.render import LAYOUT, TemplateRenderError
from newsletter.mail.templates import checks, diffs, previews, store, versions
from newsletter.mail.templates.models import TemplateFailure
from newsletter.mail.transports import DeliveryError
from newsletter.readers.models import Reader
from newsletter.web import id_list_param, id_param

bp = Blueprint("admin", __name__, url_prefix="/admin")

# Email HTML shown to staff is untrusted: a frame of its own, no scripts, no requests
# out except images (as the outbox does).
PREVIEW_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src data: https: http:; "
    "font-src https: data:; frame-ancestors 'self'; form-action 'none'; base-uri 'none'; "
    "sandbox allow-popups allow-popups-to-escape-sandbox"
)


def init_app(app: Flask) -> None:
    app.register_blueprint(bp)
    # CSRF is checked in `staff_only`, after the staff check, so that a POST from anyone
    # else is a 404 like everything else here rather than a CSRF error.
    csrf.exempt(bp)
    app.context_processor(_staff_nav)


def _staff_nav() -> dict[str, bool]:
    """`is_staff_member` for the "Admin" link in the site header. Read without a database
    round trip when the reader is already loaded, and safely on error pages, where the
    session is already closed."""
    reader = current_reader()
    if reader is None:
        return {"is_staff_member": False}
    state = inspect(reader)
    value = state.dict.get("is_staff")
    if value is None and not state.detached:
        value = reader.is_staff
    return {"is_staff_member": bool(value)}


@bp.before_request
def staff_only():  # type: ignore[no-untyped-def]
    reader = current_reader()
    if reader is None or not reader.is_staff:
        abort(404)
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        csrf.protect()


def _staff() -> Reader:
    reader = current_reader()
    assert reader is not None
    return reader


def _preview_response(html: str):  # type: ignore[no-untyped-def]
    response = current_app.response_class(html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    response.headers["Cache-Control"] = "no-store"
    return response


def _error_document(title: str, errors: list[str]) -> str:
    return render_template("admin/preview_error.html", title=title, errors=errors)


# --- dashboard ---------------------------------------------------------------------------


@bp.get("/")
def index():  # type: ignore[no-untyped-def]
    session = db_session()
    now = utcnow()
    plans = dashboard.readers_by_plan(session, 30, now)
    plan_chart = charts.lines(
        [p.day for p in plans],
        [
            ("free", "Free", [p.free for p in plans]),
            ("trial", "Trial", [p.trial for p in plans]),
            ("paid", "Paid", [p.paid for p in plans]),
        ],
        "Readers by plan, last 30 days",
    )
    editions = dashboard.editions_sent(session)
    sent_chart = charts.stacked_bars(
        [(f"{e.day:%a %b} {e.day.day}", [("sent", e.sent)]) for e in editions],
        [("sent", "Sent")],
        "Emails sent per edition",
    )
    failure_chart = charts.stacked_bars(
        [
            (f"{e.day:%a %b} {e.day.day}", [("failed", e.failed), ("bounced", e.bounced)])
            for e in editions
        ],
        [("failed", "Failed"), ("bounced", "Bounced")],
        "Delivery failures and bounces per edition",
    )
    clicks = dashboard.clicks_per_story(session, 30, now=now)
    clicks_chart = charts.stacked_bars(
        [(c.title, [("human", c.human), ("bot", c.bot)]) for c in clicks],
        [("human", "Human"), ("bot", "Bot")],
        "Clicks per story, last 30 days",
    )
    funnel = dashboard.funnel(session, 30, now)
    funnel_chart = charts.funnel(
        [
            ("Paywall impressions", funnel.paywall_impressions),
            ("Trials started", funnel.trials),
            ("Paid", funnel.paid),
        ],
        "Paywall impressions to trials to paid, last 30 days",
    )
    return render_template(
        "admin/dashboard.html",
        totals=dashboard.totals(session),
        plans=plans,
        plan_chart=plan_chart,
        editions=editions,
        sent_chart=sent_chart,
        failure_chart=failure_chart,
        clicks=clicks,
        clicks_chart=clicks_chart,
        funnel=funnel,
        funnel_chart=funnel_chart,
        failures=store.failures(session, limit=5),
    )


@bp.get("/audit")
def audit():  # type: ignore[no-untyped-def]
    before = id_param(request.args, "before")
    entries = services.audit_entries(db_session(), 200, before)
    return render_template("admin/audit.html", entries=entries)


# --- templates ---------------------------------------------------------------------------


def _form_parts(name: str) -> dict[str, str]:
    return {
        "subject": "" if name == LAYOUT else request.form.get("subject", ""),
        "mjml": request.form.get("mjml", "").replace("\r\n", "\n"),
        "text": request.form.get("text", "").replace("\r\n", "\n"),
    }


def _ensure_defaults() -> None:
    session = db_session()
    try:
        versions.ensure_defaults(session)
        session.commit()
    except IntegrityError:  # another request stored the same defaults at the same moment
        session.rollback()


@bp.get("/templates")
def template_list():  # type: ignore[no-untyped-def]
    session = db_session()
    _ensure_defaults()
    rows = []
    for name in store.editable_names():
        history = versions.versions(session, name)
        rows.append(
            {
                "name": name,
                "label": store.label(name),
                "versions": len(history),
                "published": store.published_number(session, name),
                "latest": history[0] if history else None,
            }
        )
    return render_template(
        "admin/templates.html", rows=rows, failures=store.failures(session, limit=10)
    )


def _editor(name: str, parts: dict[str, str], base_number: int | None, **extra):  # type: ignore[no-untyped-def]
    session = db_session()
    history = versions.versions(session, name)
    return render_template(
        "admin/template_edit.html",
        name=name,
        label=store.label(name),
        is_layout=name == LAYOUT,
        parts=parts,
        base_number=base_number,
        history=history,
        published=store.published_number(session, name),
        variants=previews.variant_names(name),
        failures=store.failures(session, name, limit=10),
        **extra,
    )


@bp.get("/templates/<name>")
def template_edit(name: str):  # type: ignore[no-untyped-def]
    store.check_name(name)
    session = db_session()
    _ensure_defaults()
    number = id_param(request.args, "from")
    if number is None:
        history = versions.versions(session, name)
        number = history[0].number
    version = versions.get_version(session, name, number)
    return _editor(name, version.parts(), version.number)


@bp.post("/templates/<name>")
def template_save(name: str):  # type: ignore[no-untyped-def]
    store.check_name(name)
    session = db_session()
    parts = _form_parts(name)
    try:
        version, result = versions.save_version(
            session, name, parts, _staff(), request.form.get("note", "")
        )
    except checks.TemplateInvalid as exc:
        session.rollback()
        return _editor(
            name,
            parts,
            id_param(request.form, "base"),
            errors=exc.result.errors,
            warnings=exc.result.warnings,
        ), 400
    services.audit(session, _staff(), "template.save", f"{name} v{version.number}", version.note)
    session.commit()
    flash(f"Saved as version {version.number}. It is not sent until you publish it.", "ok")
    for warning in result.warnings:
        flash(f"Warning: {warning}", "error")
    return redirect(url_for("admin.template_edit", name=name, **{"from": version.number}), 303)


@bp.post("/templates/<name>/preview")
def template_preview(name: str):  # type: ignore[no-untyped-def]
    """The unsaved editor content, rendered with sample data (into the preview frames)."""
    store.check_name(name)
    return _render_preview(name, _form_parts(name))


@bp.get("/templates/<name>/versions/<int:number>/preview")
def version_preview(name: str, number: int):  # type: ignore[no-untyped-def]
    store.check_name(name)
    version = versions.get_version(db_session(), name, number)
    return _render_preview(name, version.parts())


def _render_preview(name: str, parts: dict[str, str]):  # type: ignore[no-untyped-def]
    session = db_session()
    view = request.values.get("view", "html")
    try:
        rendered = previews.preview(session, name, parts, request.values.get("variant"))
    except TemplateRenderError as exc:
        return _preview_response(_error_document("This version cannot be shown", [exc.message]))
    if view == "text":
        return _preview_response(
            render_template("admin/preview_text.html", subject=rendered.subject, text=rendered.text)
        )
    return _preview_response(rendered.html)


@bp.post("/templates/<name>/check")
def template_check(name: str):  # type: ignore[no-untyped-def]
    """Errors and warnings for the unsaved editor content, as JSON (the editor's script)."""
    store.check_name(name)
    result = checks.check(db_session(), name, _form_parts(name))
    return jsonify(errors=result.errors, warnings=result.warnings, html_bytes=result.html_bytes)


@bp.post("/templates/<name>/versions/<int:number>/publish")
def template_publish(name: str, number: int):  # type: ignore[no-untyped-def]
    store.check_name(name)
    session = db_session()
    version = versions.get_version(session, name, number)
    previous = store.published_number(session, name)
    try:
        versions.publish(session, version, _staff())
    except checks.TemplateInvalid as exc:
        session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("admin.template_edit", name=name, **{"from": number}), 303)
    rerendered = []
    if name in ("edition", LAYOUT):
        rerendered = services.rerender_unsent(session)
    action = "template.rollback" if previous and number < previous else "template.publish"
    services.audit(
        session,
        _staff(),
        action,
        f"{name} v{number}",
        f"was v{previous}" if previous else "was the default files",
    )
    session.commit()
    note = ""
    if rerendered:
        dates = ", ".join(e.date.isoformat() for e in rerendered)
        note = f" The edition of {dates}, not sent yet, was rendered again with it."
    word = "Rolled back to" if action == "template.rollback" else "Published"
    flash(f"{word} version {number}: it is used from the next email on.{note}", "ok")
    return redirect(url_for("admin.template_edit", name=name, **{"from": number}), 303)


@bp.post("/templates/<name>/versions/<int:number>/test")
def template_test(name: str, number: int):  # type: ignore[no-untyped-def]
    store.check_name(name)
    session = db_session()
    version = versions.get_version(session, name, number)
    staff = _staff()
    try:
        rendered = previews.preview(session, name, version.parts(), request.form.get("variant"))
        services.send_rendered_test(
            current_app._get_current_object(),  # type: ignore[attr-defined]
            staff.email,
            rendered,
            list_mail=name in ("edition", LAYOUT),
        )
    except (TemplateRenderError, DeliveryError) as exc:
        flash(f"The test was not sent: {exc}", "error")
    else:
        services.audit(session, staff, "template.test_send", f"{name} v{number}", staff.email)
        session.commit()
        flash(f"Test of version {number} sent to {staff.email}.", "ok")
    return redirect(url_for("admin.template_edit", name=name, **{"from": number}), 303)


@bp.get("/templates/<name>/diff")
def template_diff(name: str):  # type: ignore[no-untyped-def]
    store.check_name(name)
    session = db_session()
    history = versions.versions(session, name)
    if not history:
        raise NotFound("No versions yet.")
    b = id_param(request.args, "b") or history[0].number
    a = id_param(request.args, "a") or max(1, b - 1)
    va, vb = versions.get_version(session, name, a), versions.get_version(session, name, b)
    return render_template(
        "admin/template_diff.html",
        name=name,
        label=store.label(name),
        a=va,
        b=vb,
        history=history,
        parts=diffs.diff(va, vb),
    )


# --- editions ----------------------------------------------------------------------------


@bp.get("/editions")
def editions():  # type: ignore[no-untyped-def]
    session = db_session()
    rows = services.recent_editions(session)
    progress = services.progress(session, [e.id for e in rows])
    return render_template(
        "admin/editions.html",
        editions=rows,
        progress=progress,
        upcoming=services.next_edition(session),
        tomorrow=(utcnow().date() + timedelta(days=1)).isoformat(),
    )


@bp.post("/editions/assemble")
def edition_assemble():  # type: ignore[no-untyped-def]
    session = db_session()
    try:
        day = parse_day(request.form.get("date", ""))
    except InvalidInput as exc:
        flash(exc.message, "error")
        return redirect(url_for("admin.editions"), 303)
    try:
        result = assemble(session, day)
    except NoStories as exc:
        session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("admin.editions"), 303)
    services.audit(session, _staff(), "edition.assemble", day.isoformat())
    session.commit()
    if not result.created:
        flash("That edition is already being sent; it was left as it was.", "error")
    return redirect(url_for("admin.edition", edition_id=result.edition.id), 303)


@bp.get("/editions/progress")
def editions_progress():  # type: ignore[no-untyped-def]
    ids = id_list_param(request.args, "ids", limit=100)
    found = services.progress(db_session(), ids)
    return jsonify({str(k): v.as_json() for k, v in found.items()})


@bp.get("/editions/<int:edition_id>")
def edition(edition_id: int):  # type: ignore[no-untyped-def]
    session = db_session()
    found = services.get_edition(session, edition_id)
    failures = list(
        session.scalars(
            select(TemplateFailure)
            .where(TemplateFailure.edition_id == edition_id)
            .order_by(TemplateFailure.id.desc())
        )
    )
    return render_template(
        "admin/edition.html",
        edition=found,
        progress=services.progress(session, [edition_id])[edition_id],
        plans=[p.value for p in Plan],
        failures=failures,
        editable=services.stories_editable(session, found),
    )


@bp.get("/editions/<int:edition_id>/variants/<plan>/preview")
def edition_variant_preview(edition_id: int, plan: str):  # type: ignore[no-untyped-def]
    session = db_session()
    found = services.get_edition(session, edition_id)
    try:
        variant = found.variant(Plan(plan))
    except (KeyError, ValueError):
        abort(404)
    cfg = current_app.config
    if request.args.get("view") == "text":
        text = services.fill_preview_holes(
            found,
            variant.text_body,
            cfg["BASE_URL"],
            cfg["FREE_STORIES_PER_MONTH"],
            cfg["TRIAL_DAYS"],
        )
        return _preview_response(
            render_template("admin/preview_text.html", subject=variant.subject, text=text)
        )
    html = services.fill_preview_holes(
        found,
        variant.html_body,
        cfg["BASE_URL"],
        cfg["FREE_STORIES_PER_MONTH"],
        cfg["TRIAL_DAYS"],
    )
    return _preview_response(html)


@bp.post("/editions/<int:edition_id>/stories")
def edition_stories(edition_id: int):  # type: ignore[no-untyped-def]
    session = db_session()
    found = services.get_edition(session, edition_id)
    story_id = id_param(request.form, "story_id") or 0
    action = request.form.get("action", "")
    try:
        if action == "up":
            services.move_story(session, found, story_id, -1)
        elif action == "down":
            services.move_story(session, found, story_id, +1)
        elif action == "drop":
            services.drop_story(session, found, story_id)
        else:
            raise InvalidInput("Choose up, down or drop.")
    except InvalidInput as exc:
        session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("admin.edition", edition_id=edition_id), 303)
    services.audit(
        session, _staff(), f"edition.story_{action}", f"edition {found.date}", f"story {story_id}"
    )
    session.commit()
    if found.compose_error is not None:
        flash(f"Done, but the edition still cannot be composed: {found.compose_error}", "error")
    else:
        flash("Done: every variant was rendered again.", "ok")
    return redirect(url_for("admin.edition", edition_id=edition_id), 303)


@bp.post("/editions/<int:edition_id>/test")
def edition_test(edition_id: int):  # type: ignore[no-untyped-def]
    session = db_session()
    found = services.get_edition(session, edition_id)
    staff = _staff()
    try:
        plan = Plan(request.form.get("plan", "free"))
        services.send_edition_test(
            session,
            current_app._get_current_object(),  # type: ignore[attr-defined]
            found,
            staff,
            plan,
        )
    except ValueError:
        flash("Choose a plan.", "error")
    except (DeliveryError, KeyError, CannotCompose) as exc:
        flash(f"The test was not sent: {exc}", "error")
    else:
        services.audit(
            session, staff, "edition.test_send", f"edition {found.date}", f"{plan.value} variant"
        )
        session.commit()
        flash(f"The {plan.value} variant was sent to {staff.email}.", "ok")
    return redirect(url_for("admin.edition", edition_id=edition_id), 303)


@bp.post("/editions/<int:edition_id>/pause")
def edition_pause(edition_id: int):  # type: ignore[no-untyped-def]
    return _set_paused(edition_id, True)


@bp.post("/editions/<int:edition_id>/resume")
def edition_resume(edition_id: int):  # type: ignore[no-untyped-def]
    return _set_paused(edition_id, False)


def _set_paused(edition_id: int, paused: bool):  # type: ignore[no-untyped-def]
    session = db_session()
    found = services.get_edition(session, edition_id)
    try:
        services.set_paused(session, found, paused)
    except InvalidInput as exc:
        session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("admin.edition", edition_id=edition_id), 303)
    services.audit(
        session, _staff(), "edition.pause" if paused else "edition.resume", f"edition {found.date}"
    )
    session.commit()
    flash(
        "Paused: no more emails of this edition go out until you resume (those already "
        "handed to a sender finish)."
        if paused
        else "Resumed: the worker carries on with the send within a minute.",
        "ok",
    )
    return redirect(url_for("admin.edition", edition_id=edition_id), 303)


# --- readers -----------------------------------------------------------------------------


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
    staff = _staff()
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
