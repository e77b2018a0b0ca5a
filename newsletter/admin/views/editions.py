"""`/admin/editions/…`: assemble, preview, edit, test send and pause editions."""

from __future__ import annotations

from datetime import timedelta

from flask import abort, current_app, flash, jsonify, redirect, render_template, request, url_for

from newsletter.admin import services
from newsletter.admin.views.blueprint import bp, current_staff, preview_response
from newsletter.billing.entitlement import Plan
from newsletter.db import db_session, utcnow
from newsletter.editions import editing
from newsletter.editions.assembly import NoStories, assemble
from newsletter.editions.rendering import CannotCompose
from newsletter.errors import InvalidInput
from newsletter.inputs import parse_day
from newsletter.mail.templates import store
from newsletter.mail.transports import DeliveryError
from newsletter.web import id_list_param, id_param


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
    services.audit(session, current_staff(), "edition.assemble", day.isoformat())
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
    found = editing.get_edition(session, edition_id)
    return render_template(
        "admin/edition.html",
        edition=found,
        progress=services.progress(session, [edition_id])[edition_id],
        plans=[p.value for p in Plan],
        failures=store.edition_failures(session, edition_id),
        editable=editing.stories_editable(session, found),
    )


@bp.get("/editions/<int:edition_id>/variants/<plan>/preview")
def edition_variant_preview(edition_id: int, plan: str):  # type: ignore[no-untyped-def]
    session = db_session()
    found = editing.get_edition(session, edition_id)
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
        return preview_response(
            render_template("admin/preview_text.html", subject=variant.subject, text=text)
        )
    html = services.fill_preview_holes(
        found,
        variant.html_body,
        cfg["BASE_URL"],
        cfg["FREE_STORIES_PER_MONTH"],
        cfg["TRIAL_DAYS"],
    )
    return preview_response(html)


@bp.post("/editions/<int:edition_id>/stories")
def edition_stories(edition_id: int):  # type: ignore[no-untyped-def]
    session = db_session()
    found = editing.get_edition(session, edition_id)
    story_id = id_param(request.form, "story_id") or 0
    action = request.form.get("action", "")
    try:
        if action == "up":
            editing.move_story(session, found, story_id, -1)
        elif action == "down":
            editing.move_story(session, found, story_id, +1)
        elif action == "drop":
            editing.drop_story(session, found, story_id)
        else:
            raise InvalidInput("Choose up, down or drop.")
    except InvalidInput as exc:
        session.rollback()
        flash(exc.message, "error")
        return _edition_page(edition_id)
    services.audit(
        session,
        current_staff(),
        f"edition.story_{action}",
        f"edition {found.date}",
        f"story {story_id}",
    )
    session.commit()
    if found.compose_error is not None:
        flash(f"Done, but the edition still cannot be composed: {found.compose_error}", "error")
    else:
        flash("Done: every variant was rendered again.", "ok")
    return _edition_page(edition_id)


@bp.post("/editions/<int:edition_id>/test")
def edition_test(edition_id: int):  # type: ignore[no-untyped-def]
    session = db_session()
    found = editing.get_edition(session, edition_id)
    staff = current_staff()
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
    return _edition_page(edition_id)


@bp.post("/editions/<int:edition_id>/pause")
def edition_pause(edition_id: int):  # type: ignore[no-untyped-def]
    return _set_paused(edition_id, True)


@bp.post("/editions/<int:edition_id>/resume")
def edition_resume(edition_id: int):  # type: ignore[no-untyped-def]
    return _set_paused(edition_id, False)


def _set_paused(edition_id: int, paused: bool):  # type: ignore[no-untyped-def]
    session = db_session()
    found = editing.get_edition(session, edition_id)
    try:
        services.set_paused(session, found, paused)
    except InvalidInput as exc:
        session.rollback()
        flash(exc.message, "error")
        return _edition_page(edition_id)
    services.audit(
        session,
        current_staff(),
        "edition.pause" if paused else "edition.resume",
        f"edition {found.date}",
    )
    session.commit()
    flash(
        "Paused: no more emails of this edition go out until you resume (those already "
        "handed to a sender finish)."
        if paused
        else "Resumed: the worker carries on with the send within a minute.",
        "ok",
    )
    return _edition_page(edition_id)


def _edition_page(edition_id: int):  # type: ignore[no-untyped-def]
    """Back to the edition's page after a form, where the flashed message shows."""
    return redirect(url_for("admin.edition", edition_id=edition_id), 303)
