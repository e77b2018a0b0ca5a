"""`/admin/templates/…`: edit, check, preview, publish, test and compare email templates."""

from __future__ import annotations

from typing import Any

from flask import current_app, flash, jsonify, redirect, render_template, request, url_for
from sqlalchemy.exc import IntegrityError

from newsletter.admin import services
from newsletter.admin.views.blueprint import bp, current_staff, error_document, preview_response
from newsletter.db import db_session
from newsletter.editions import editing
from newsletter.errors import NotFound
from newsletter.mail.render import LAYOUT, TemplateRenderError
from newsletter.mail.templates import checks, diffs, previews, store, versions
from newsletter.mail.transports import DeliveryError
from newsletter.web import id_param


def _form_parts(name: str) -> dict[str, str]:
    return {
        "subject": "" if name == LAYOUT else request.form.get("subject", ""),
        "mjml": request.form.get("mjml", "").replace("\r\n", "\n"),
        "text": request.form.get("text", "").replace("\r\n", "\n"),
    }


def _editor_url(name: str, number: int) -> str:
    # `from` is a Python keyword: it cannot be a keyword argument as written.
    values: dict[str, Any] = {"name": name, "from": number}
    return url_for("admin.template_edit", **values)


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
            session, name, parts, current_staff(), request.form.get("note", "")
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
    services.audit(
        session, current_staff(), "template.save", f"{name} v{version.number}", version.note
    )
    session.commit()
    flash(f"Saved as version {version.number}. It is not sent until you publish it.", "ok")
    for warning in result.warnings:
        flash(f"Warning: {warning}", "error")
    return redirect(_editor_url(name, version.number), 303)


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
        return preview_response(error_document("This version cannot be shown", [exc.message]))
    if view == "text":
        return preview_response(
            render_template("admin/preview_text.html", subject=rendered.subject, text=rendered.text)
        )
    return preview_response(rendered.html)


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
        versions.publish(session, version, current_staff())
    except checks.TemplateInvalid as exc:
        session.rollback()
        flash(exc.message, "error")
        return redirect(_editor_url(name, number), 303)
    rerendered = []
    if name in ("edition", LAYOUT):
        rerendered = editing.rerender_unsent(session)
    action = "template.rollback" if previous and number < previous else "template.publish"
    services.audit(
        session,
        current_staff(),
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
    return redirect(_editor_url(name, number), 303)


@bp.post("/templates/<name>/versions/<int:number>/test")
def template_test(name: str, number: int):  # type: ignore[no-untyped-def]
    store.check_name(name)
    session = db_session()
    version = versions.get_version(session, name, number)
    staff = current_staff()
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
    return redirect(_editor_url(name, number), 303)


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
