"""`/admin/feeds/…`: outlets' feeds and their health; add, edit, pause; an outlet's own
rating, set by staff."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from sqlalchemy import select

from newsletter.admin import services as admin
from newsletter.admin.views.blueprint import bp, current_staff
from newsletter.db import db_session
from newsletter.errors import InvalidInput, NotFound
from newsletter.feeds import services
from newsletter.stories.models import Bias, Factuality, Outlet


@bp.get("/feeds")
def feeds():  # type: ignore[no-untyped-def]
    session = db_session()
    rows = services.health(session, services.list_feeds(session))
    outlets = list(session.scalars(select(Outlet).order_by(Outlet.slug)))
    return render_template("admin/feeds.html", rows=rows, outlets=outlets)


@bp.post("/feeds")
def feed_add():  # type: ignore[no-untyped-def]
    session = db_session()
    try:
        feed, created = services.add_feed(
            session, request.form.get("outlet", ""), request.form.get("url", "")
        )
    except InvalidInput as exc:
        session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("admin.feeds"), 303)
    detail = f"outlet {feed.outlet.slug}" + (" (new, unrated)" if created else "")
    admin.audit(session, current_staff(), "feed.add", feed.url, detail)
    session.commit()
    flash(f"Feed added for {feed.outlet.name}; it is fetched at the worker's next run.", "ok")
    return redirect(url_for("admin.feed", feed_id=feed.id), 303)


@bp.get("/feeds/<int:feed_id>")
def feed(feed_id: int):  # type: ignore[no-untyped-def]
    session = db_session()
    found = services.get_feed(session, feed_id)
    (row,) = services.health(session, [found])
    runs = services.recent_runs(session, feed_id)
    return render_template(
        "admin/feed.html",
        row=row,
        f=found,
        runs=runs,
        biases=list(Bias),
        factualities=list(Factuality),
    )


def _feed_action(feed_id: int, action: str):  # type: ignore[no-untyped-def]
    session = db_session()
    target = services.get_feed(session, feed_id)
    old_url = target.url
    try:
        if action == "edit":
            services.update_feed(session, target, request.form.get("url", ""))
            message, detail = "Feed address saved.", f"{old_url} → {target.url}"
        else:
            services.set_paused(session, target, action == "pause")
            message = "Feed paused." if action == "pause" else "Feed resumed."
            detail = ""
    except InvalidInput as exc:
        session.rollback()
        flash(exc.message, "error")
        return redirect(url_for("admin.feed", feed_id=feed_id), 303)
    admin.audit(session, current_staff(), f"feed.{action}", target.url, detail)
    session.commit()
    flash(message, "ok")
    return redirect(url_for("admin.feed", feed_id=feed_id), 303)


@bp.post("/feeds/<int:feed_id>")
def feed_edit(feed_id: int):  # type: ignore[no-untyped-def]
    return _feed_action(feed_id, "edit")


@bp.post("/feeds/<int:feed_id>/pause")
def feed_pause(feed_id: int):  # type: ignore[no-untyped-def]
    return _feed_action(feed_id, "pause")


@bp.post("/feeds/<int:feed_id>/resume")
def feed_resume(feed_id: int):  # type: ignore[no-untyped-def]
    return _feed_action(feed_id, "resume")


@bp.post("/outlets/<int:outlet_id>/rating")
def outlet_rating(outlet_id: int):  # type: ignore[no-untyped-def]
    session = db_session()
    outlet = session.get(Outlet, outlet_id)
    if outlet is None:
        raise NotFound("No such outlet.")
    back = request.form.get("feed_id", "")
    target = (
        url_for("admin.feed", feed_id=int(back))
        if back.isascii() and back.isdigit() and len(back) < 10
        else url_for("admin.feeds")
    )
    staff = current_staff()
    try:
        services.set_staff_rating(
            session,
            outlet,
            request.form.get("bias", ""),
            request.form.get("factuality", ""),
            staff.email,
        )
    except InvalidInput as exc:
        session.rollback()
        flash(exc.message, "error")
        return redirect(target, 303)
    admin.audit(
        session,
        staff,
        "outlet.rating",
        outlet.slug,
        f"{outlet.bias.value}, {outlet.factuality.value}",
    )
    session.commit()
    flash(
        f"{outlet.name} is rated {outlet.bias.value}, {outlet.factuality.value} (by staff).", "ok"
    )
    return redirect(target, 303)
