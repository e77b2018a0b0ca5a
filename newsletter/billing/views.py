"""Billing pages: start a plan, Stripe Checkout, the return from it, the customer portal.
Thin: translate the request, call the services, commit."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from sqlalchemy import select

from newsletter.auth.session import current_reader, login_required
from newsletter.billing.checkout import (
    AlreadySubscribed,
    CheckoutOrigin,
    NoBillingAccount,
    complete_checkout,
    portal_url,
    start_checkout,
)
from newsletter.billing.entitlement import Plan, billing_status
from newsletter.billing.gateway import BillingNotConfigured, configured, gateway
from newsletter.billing.notifications import local_date
from newsletter.db import db_session
from newsletter.editions.models import Edition
from newsletter.errors import NotFound
from newsletter.stories.models import Story
from newsletter.tracking.views import reading_cookie

bp = Blueprint("billing", __name__, url_prefix="/billing")

# The reading cookie set by tracked links names the edition a reader came from; a trial
# started from its paywall is credited to it.


@bp.app_template_filter("local_date")
def local_date_filter(moment: datetime | None, timezone: str = "UTC") -> str:
    return local_date(moment, timezone) if moment else ""


@bp.app_context_processor
def billing_context() -> dict[str, Any]:
    return {"billing_enabled": configured(), "price_label": _price_label()}


def _price_label() -> str:
    return str(current_app.config.get("PRICE_LABEL", "$5/month"))


def _require_configured() -> None:
    if not configured():
        raise BillingNotConfigured()


def _not_configured_page(exc: BillingNotConfigured):  # type: ignore[no-untyped-def]
    return render_template("billing_unavailable.html", message=exc.message), exc.status_code


bp.register_error_handler(BillingNotConfigured, _not_configured_page)


def _origin(reader_id: int, slug: str | None) -> tuple[CheckoutOrigin, Story | None]:
    session = db_session()
    story = session.scalar(select(Story).where(Story.slug == slug)) if slug else None
    edition_id = None
    cookie_reader, cookie_edition = reading_cookie()
    if cookie_reader == reader_id and cookie_edition is not None:
        edition_id = cookie_edition if session.get(Edition, cookie_edition) else None
    return CheckoutOrigin(story.id if story else None, edition_id), story


@bp.get("/start", defaults={"slug": None})
@bp.get("/start/<slug>")
def start(slug: str | None):  # type: ignore[no-untyped-def]
    """What the plan is and a button to Checkout: where the paywall sends a reader who
    arrived by an email link and has to sign in first. Without billing, an old link here
    says what the site does offer (no sign-in first: there is nothing to buy)."""
    if not configured():
        message = "This site has no paid plan."
        return render_template("billing_unavailable.html", message=message)
    return _start(slug)


@login_required
def _start(slug: str | None):  # type: ignore[no-untyped-def]
    reader = current_reader()
    status = billing_status(db_session(), reader)  # type: ignore[arg-type]
    if status.plan != Plan.FREE:
        return redirect(url_for("readers.account"), 303)
    return render_template("billing_start.html", status=status, slug=slug)


@bp.post("/checkout")
@login_required
def checkout():  # type: ignore[no-untyped-def]
    _require_configured()
    reader = current_reader()
    assert reader is not None
    session = db_session()
    slug = request.form.get("from") or None
    origin, story = _origin(reader.id, slug)
    base = current_app.config["BASE_URL"]
    cancel_url = f"{base}/stories/{story.slug}" if story else f"{base}/account"
    session.commit()  # the checkout starts its own transaction (see locking.lock)
    try:
        url = start_checkout(session, gateway(), reader, origin=origin, cancel_url=cancel_url)
    except AlreadySubscribed as exc:
        session.commit()
        flash(exc.message, "ok")
        return redirect(url_for("readers.account"), 303)
    session.commit()
    return redirect(url, 303)


@bp.get("/return")
@login_required
def checkout_return():  # type: ignore[no-untyped-def]
    _require_configured()
    reader = current_reader()
    assert reader is not None
    checkout_session_id = request.args.get("session_id", "")
    if not checkout_session_id.startswith("cs_") or len(checkout_session_id) > 255:
        return render_template(
            "error.html", status=400, message="That checkout link is not valid."
        ), 400
    session = db_session()
    session.commit()
    try:
        result = complete_checkout(session, gateway(), reader, checkout_session_id)
    except NotFound as exc:
        # Rendered here rather than by the app's handler, which closes the session the
        # signed-in reader (shown in the page header) is loaded from.
        session.rollback()
        return render_template("error.html", status=404, message=exc.message), 404
    session.commit()
    status = billing_status(session, reader)
    return render_template("billing_return.html", result=result, status=status, reader=reader)


@bp.post("/portal")
@login_required
def portal():  # type: ignore[no-untyped-def]
    if not current_app.config.get("STRIPE_SECRET_KEY"):
        raise BillingNotConfigured()
    reader = current_reader()
    assert reader is not None
    session = db_session()
    try:
        url = portal_url(session, gateway(), reader, f"{current_app.config['BASE_URL']}/account")
    except NoBillingAccount as exc:
        flash(exc.message, "error")
        return redirect(url_for("readers.account"), 303)
    return redirect(url, 303)
