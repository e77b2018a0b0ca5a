"""`/admin/` and `/admin/audit`: the dashboard's charts and the audit log."""

from __future__ import annotations

from flask import render_template, request

from newsletter.admin import charts, dashboard, services
from newsletter.admin.views.blueprint import bp
from newsletter.db import db_session, utcnow
from newsletter.mail.templates import store
from newsletter.web import id_param


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
