"""Prometheus metrics: every metric the product exports is defined here, once.

Counters count in the process where the event happens (web workers, the scheduler, a CLI
send). With `PROMETHEUS_MULTIPROC_DIR` set (gunicorn.conf.py sets it for the web
processes; give the worker the same directory on one host), each process writes its
counts to files there and any scrape adds them up, so every gunicorn worker is counted.
Gauges that describe the database (ledger depth, each recent edition's deliveries by
state) are read from it at scrape time instead, so they are right whichever process asks.

Label values are bounded: outcomes, states and kinds from fixed sets, Flask endpoint
names, never a reader id, an address or a URL.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Iterable, Iterator
from datetime import timedelta

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

PREFIX = "newsletter"

DELIVERIES = Counter(
    f"{PREFIX}_deliveries_total",
    "Outcomes of the send loop: sent, retried, failed, suppressed.",
    ["outcome"],
)
LEASE_TAKEOVERS = Counter(
    f"{PREFIX}_lease_takeovers_total",
    "Deliveries sent again after their sender died mid-send and its lease ran out.",
)
SMTP_REPLIES = Counter(
    f"{PREFIX}_smtp_replies_total",
    "Replies of the mail server to each message: 2xx, 4xx, 5xx, or error (no reply).",
    ["reply_class"],
)
WEBHOOK_EVENTS = Counter(
    f"{PREFIX}_webhook_events_total",
    "Verified webhook events by provider, event type and what was done.",
    ["provider", "type", "outcome"],
)
WEBHOOK_REFUSED = Counter(
    f"{PREFIX}_webhook_refused_total",
    "Webhook requests refused before anything was stored (bad signature, malformed).",
    ["provider", "reason"],
)
CLICKS = Counter(
    f"{PREFIX}_tracked_clicks_total",
    "Tracked email links followed, by who followed them (human or bot).",
    ["visitor"],
)
READS = Counter(
    f"{PREFIX}_read_confirmations_total",
    "Story read confirmations, by visitor and outcome (charged, free, refused, invalid).",
    ["visitor", "outcome"],
)
PAYWALL_IMPRESSIONS = Counter(
    f"{PREFIX}_paywall_impressions_total", "Story pages shown as the paywall to a person."
)
CHECKOUTS_STARTED = Counter(
    f"{PREFIX}_checkouts_started_total", "Stripe Checkout sessions created for a reader."
)
CHECKOUTS_COMPLETED = Counter(
    f"{PREFIX}_checkouts_completed_total", "Stripe Checkout sessions completed (from webhooks)."
)
BOUNCES = Counter(
    f"{PREFIX}_bounces_total",
    "Bounce reports recorded, by where they came from and kind (hard or soft).",
    ["provider", "kind"],
)
COMPLAINTS = Counter(
    f"{PREFIX}_complaints_total", "Spam complaints recorded, by where they came from.", ["provider"]
)
JOB_RUNS = Counter(
    f"{PREFIX}_job_runs_total",
    "Scheduled job runs by job and outcome (ok, skipped, failed).",
    ["job", "outcome"],
)
JOB_SECONDS = Histogram(
    f"{PREFIX}_job_duration_seconds",
    "How long each scheduled job run took.",
    ["job"],
    buckets=(0.05, 0.25, 1, 5, 15, 60, 300, 900, 3600),
)
FEED_FETCHES = Counter(
    f"{PREFIX}_feed_fetches_total",
    "Feed fetches by outcome (ok, not_modified, error).",
    ["outcome"],
)
HTTP_REQUESTS = Counter(
    f"{PREFIX}_http_requests_total",
    "HTTP requests by Flask endpoint, method and status code.",
    ["endpoint", "method", "status"],
)
HTTP_SECONDS = Histogram(
    f"{PREFIX}_http_request_duration_seconds",
    "Time to produce each response (until its body starts), by endpoint.",
    ["endpoint"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10),
)

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
# Event types come only from verified (signed) events, so from the provider's own
# catalogue; the shape check keeps anything else out of the label values.
_EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")


def event_type(value: object) -> str:
    return value if isinstance(value, str) and _EVENT_TYPE.match(value) else "other"


def outcome_word(outcome: str) -> str:
    """The first word of a handler's outcome ("synced: active" → "synced")."""
    word = outcome.split(":", 1)[0].strip().lower().replace(" ", "_")
    return word if _EVENT_TYPE.match(word) else "other"


def webhook_event(provider: str, type_: object, outcome: str) -> None:
    """Count one handled webhook event (called after its transaction committed). A
    Stripe Checkout is counted as completed here, from the event that says so."""
    word = outcome_word(outcome)
    WEBHOOK_EVENTS.labels(provider, event_type(type_), word).inc()
    if provider == "stripe" and type_ == "checkout.session.completed" and word == "synced":
        CHECKOUTS_COMPLETED.inc()


def http_request(endpoint: str | None, method: str, status: int, seconds: float) -> None:
    name = endpoint or "unmatched"
    HTTP_REQUESTS.labels(name, method if method in _METHODS else "other", str(status)).inc()
    HTTP_SECONDS.labels(name).observe(seconds)


def reply_class(code: int | None) -> str:
    if code is None or not 200 <= code < 600:
        return "error"
    return f"{code // 100}xx"


# --- exposition ------------------------------------------------------------------------


class DatabaseCollector:
    """Gauges read from the database at scrape time: the ledger's depth, and each edition
    of the last week by delivery state (one label value per day: bounded)."""

    def __init__(self, engine: Engine, *, days: int = 7) -> None:
        self.engine = engine
        self.days = days

    def collect(self) -> Iterator[Metric]:
        from newsletter.db import utcnow
        from newsletter.delivery.models import Delivery, DeliveryState
        from newsletter.editions.models import Edition

        depth = GaugeMetricFamily(
            f"{PREFIX}_ledger_queue_depth",
            "Deliveries still to send (queued or being sent), across editions.",
        )
        by_edition = GaugeMetricFamily(
            f"{PREFIX}_edition_deliveries",
            "Deliveries of each edition of the last week, by state.",
            labels=["edition", "state"],
        )
        since = (utcnow() - timedelta(days=self.days)).date()
        with self.engine.connect() as connection:
            pending = connection.scalar(
                select(func.count())
                .select_from(Delivery)
                .where(Delivery.state.in_([DeliveryState.QUEUED, DeliveryState.SENDING]))
            )
            rows = connection.execute(
                select(Edition.date, Delivery.state, func.count())
                .join(Delivery, Delivery.edition_id == Edition.id)
                .where(Edition.date >= since)
                .group_by(Edition.date, Delivery.state)
            ).all()
        depth.add_metric([], float(pending or 0))
        for day, state, count in rows:
            by_edition.add_metric([day.isoformat(), str(getattr(state, "value", state))], count)
        yield depth
        yield by_edition


def registry_for_scrape(engine: Engine | None) -> CollectorRegistry:
    """The registry one scrape reads: every process's counters (multiprocess mode) or this
    process's, plus the database gauges when an engine is given."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_ProcessCounters())
    if engine is not None:
        registry.register(DatabaseCollector(engine))  # type: ignore[arg-type]
    return registry


class _ProcessCounters:
    """This process's own metrics (no multiprocess directory): the default registry."""

    def collect(self) -> Iterable[Metric]:
        return REGISTRY.collect()


def exposition(engine: Engine | None) -> tuple[bytes, str]:
    """The scrape's body and content type."""
    return generate_latest(registry_for_scrape(engine)), CONTENT_TYPE_LATEST


def authorized(header: str | None, token: str) -> bool:
    """A `Bearer <token>` Authorization header, compared in constant time."""
    if not header or not token:
        return False
    scheme, _, given = header.partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), token.encode()
    )


def prepare_multiprocess_dir(path: str) -> None:
    """Empty the directory at server start: files left by an earlier run's processes
    would otherwise be added to this run's counts."""
    os.makedirs(path, exist_ok=True)
    for name in os.listdir(path):
        if name.endswith(".db"):
            os.unlink(os.path.join(path, name))


def mark_process_dead(pid: int) -> None:
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(pid)
