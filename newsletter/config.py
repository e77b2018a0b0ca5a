"""Configuration read from the environment (and a `.env` file in development).

Every name here is public: operators set them, and the README's configuration table
lists them. Development gets safe defaults; production refuses to start without a real
secret rather than run insecurely.
"""

from __future__ import annotations

import os
import re
import secrets
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from newsletter.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES_DIR = PROJECT_ROOT / "templates"


def instance_path() -> Path:
    return Path(os.environ.get("NEWSLETTER_INSTANCE", "instance")).resolve()


def normalize_database_url(url: str) -> str:
    """Accept the URLs hosting platforms hand out and pick the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _dev_secret_key(instance: Path) -> str:
    """A random key generated once and kept in instance/, so dev sessions survive restarts."""
    path = instance / "secret_key"
    if path.exists():
        return path.read_text().strip()
    instance.mkdir(parents=True, exist_ok=True)
    key = secrets.token_hex(32)
    path.write_text(key)
    path.chmod(0o600)
    return key


def _int(env: dict[str, str], name: str, default: int, minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise ConfigError(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: dict[str, str], name: str, default: float, minimum: float, maximum: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"{name} must be between {minimum} and {maximum}, got {value}")
    return value


def _bool(env: dict[str, str], name: str, default: bool = False) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


@dataclass
class Config:
    ENV: str = "development"
    DEBUG: bool = False
    SECRET_KEY: str = ""
    DATABASE_URL: str = "sqlite:///instance/newsletter.db"
    BASE_URL: str = "http://localhost:5000"
    MAIL_URL: str = "outbox:"
    MAIL_FROM: str = "Both Sides Daily <daily@localhost>"
    POSTAL_ADDRESS: str = ""
    LIST_ID: str = "Both Sides Daily <daily.both-sides.localhost>"
    FREE_STORIES_PER_MONTH: int = 10
    TRIAL_DAYS: int = 7
    STRIPE_SECRET_KEY: str | None = None
    STRIPE_WEBHOOK_SECRET: str | None = None
    STRIPE_PRICE_ID: str | None = None
    STRIPE_API_BASE: str | None = None
    # `make run`'s local Stripe (localstripe + newsletter/dev/stripe_standin.py): pages
    # say TEST MODE; refused in production.
    STRIPE_DEV_STANDIN: bool = False
    # A past_due plan stays paid this many days after the failed payment, then is free.
    BILLING_GRACE_DAYS: int = 3
    # How the price reads on the paywall, the account page and billing emails.
    PRICE_LABEL: str = "$5/month"
    # Token lifetimes, in seconds.
    CONFIRM_TOKEN_MAX_AGE: int = 3 * 24 * 3600
    SIGNIN_TOKEN_MAX_AGE: int = 30 * 60
    # One confirmation email per address per this many seconds.
    EMAIL_RESEND_INTERVAL: int = 5 * 60
    # One sign-in link per address per this many seconds, while the last one is unused
    # (signing in with it lets the next request send a fresh one at once).
    SIGNIN_RESEND_INTERVAL: int = 60
    # A staff member's session ends after this many minutes without a request; a
    # reader's lasts 30 days (PERMANENT_SESSION_LIFETIME, renewed by every request).
    STAFF_IDLE_MINUTES: int = 60
    # Rate limits: "count/seconds" per IP and per address.
    RATE_LIMIT_PER_IP: str = "20/3600"
    RATE_LIMIT_PER_ADDRESS: str = "5/3600"
    SMTP_TIMEOUT: int = 30
    # The edition: its reading budget and how far back stories may come from.
    EDITION_READING_MINUTES: int = 5
    EDITION_WINDOW_HOURS: int = 72
    OUTBOX_DIR: str = ""
    # A story is a blindspot for a side whose share of its rated outlets is below
    # BLINDSPOT_MAX_SHARE, once at least BLINDSPOT_MIN_SOURCES rated outlets cover it.
    BLINDSPOT_MAX_SHARE: float = 0.2
    BLINDSPOT_MIN_SOURCES: int = 3
    # Bearer token for POST /api/stories; unset means the API refuses everyone.
    STORIES_API_TOKEN: str | None = None
    STORIES_API_MAX_BYTES: int = 2 * 1024 * 1024
    # Clustering feed articles into stories: how far apart two articles of one story may
    # be, and when a candidate story publishes itself (unset: only staff publish).
    STORIES_CLUSTER_WINDOW_HOURS: int = 48
    STORIES_AUTO_PUBLISH_OUTLETS: int | None = None
    # Feeds (newsletter/feeds/): how often a healthy feed is fetched, the longest wait
    # after repeated errors, and the limits of one fetch. FEEDS_ALLOW_PRIVATE lets feeds
    # on private, loopback and link-local addresses through (tests and local servers).
    FEEDS_INTERVAL_MINUTES: int = 30
    FEEDS_MAX_BACKOFF_HOURS: int = 24
    FEEDS_TIMEOUT_SECONDS: float = 20.0
    FEEDS_MAX_BYTES: int = 5 * 1024 * 1024
    FEEDS_MAX_REDIRECTS: int = 5
    FEEDS_ALLOW_PRIVATE: bool = False
    # Delivery (newsletter/delivery/sender.py): concurrent SMTP connections, messages per
    # second across them (0: unlimited), ledger rows claimed per batch, retries of
    # temporary refusals (full-jitter exponential backoff from BASE, capped at MAX) and
    # how long a claim holds before another sender may take the row over.
    SEND_CONNECTIONS: int = 4
    SEND_RATE_PER_SECOND: float = 0.0
    SEND_BATCH_SIZE: int = 200
    SEND_MAX_ATTEMPTS: int = 5
    SEND_RETRY_BASE_SECONDS: float = 60.0
    SEND_RETRY_MAX_SECONDS: float = 3600.0
    SEND_LEASE_SECONDS: float = 60.0
    # Tracked-link clicks are buffered per process and written this often (clicklog.py).
    CLICK_FLUSH_SECONDS: float = 1.0
    # Limits of one render of a staff-edited email template (newsletter/mail/render.py).
    TEMPLATE_CPU_SECONDS: int = 2
    TEMPLATE_MEMORY_MB: int = 256
    TEMPLATE_OUTPUT_MB: int = 4
    TEMPLATE_WALL_SECONDS: float = 10.0
    # Operations: /metrics answers only with this bearer token (unset: no endpoint); logs
    # as text or JSON lines; errors also to Sentry when a DSN is set.
    METRICS_TOKEN: str | None = None
    LOG_FORMAT: str = "text"
    SENTRY_DSN: str | None = None
    # Deliverability (newsletter/deliverability/): the bounce and complaint policy, the
    # automatic pause of an edition, and the providers' webhooks (unset: 404).
    SOFT_BOUNCE_LIMIT: int = 3
    SOFT_BOUNCE_WINDOW_DAYS: int = 15
    PAUSE_MIN_DELIVERIES: int = 1000
    PAUSE_COMPLAINT_RATE: float = 0.003
    PAUSE_HARD_BOUNCE_RATE: float = 0.05
    SES_TOPIC_ARNS: str | None = None
    POSTMARK_WEBHOOK_USER: str | None = None
    POSTMARK_WEBHOOK_PASSWORD: str | None = None
    MAILGUN_WEBHOOK_SIGNING_KEY: str | None = None
    MAILGUN_WEBHOOK_TOLERANCE_SECONDS: int = 300
    SENDGRID_WEBHOOK_PUBLIC_KEY: str | None = None
    SENDGRID_WEBHOOK_TOLERANCE_SECONDS: int = 300
    # The VERP base of every Return-Path (unset: MAIL_FROM's address), the bounce
    # mailbox and how often the worker reads it, DKIM keys (a PEM in the env or a file),
    # the sender id in Feedback-ID, and a resolver (host:port) for `deliverability
    # check`, meant for testing against a local DNS server.
    BOUNCE_ADDRESS: str = ""
    BOUNCE_IMAP_URL: str = ""
    BOUNCE_FETCH_MINUTES: int = 10
    DKIM_SELECTOR: str = ""
    DKIM_PRIVATE_KEY: str = ""
    DKIM_PRIVATE_KEY_FILE: str = ""
    DKIM_ED25519_SELECTOR: str = ""
    DKIM_ED25519_PRIVATE_KEY_FILE: str = ""
    FEEDBACK_SENDER_ID: str = "bsd"
    DNS_RESOLVER: str = ""
    # Lists moved in (newsletter/readers/importing.py): opt-in emails the worker sends
    # per minute to imported readers without documented consent, and the largest upload.
    IMPORT_INVITES_PER_RUN: int = 60
    IMPORT_MAX_BYTES: int = 100 * 1024 * 1024
    # How long the emailed "delete my account" link stays valid, in seconds.
    ERASE_TOKEN_MAX_AGE: int = 24 * 3600
    # How often the worker runs its every-minute jobs (deliveries, opt-in emails).
    WORKER_TICK_SECONDS: int = 60
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def production(self) -> bool:
        return self.ENV == "production"

    @property
    def instance(self) -> Path:
        return instance_path()

    @property
    def outbox_dir(self) -> Path:
        return Path(self.OUTBOX_DIR) if self.OUTBOX_DIR else self.instance / "outbox"

    @property
    def webhook_secrets(self) -> list[str]:
        raw = self.STRIPE_WEBHOOK_SECRET or ""
        return [s.strip() for s in raw.split(",") if s.strip()]

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides: Any) -> Config:
        env = dict(os.environ if env is None else env)
        cfg = cls(
            ENV=env.get("NEWSLETTER_ENV", "development"),
            DEBUG=_bool(env, "FLASK_DEBUG"),
            SECRET_KEY=env.get("SECRET_KEY", ""),
            DATABASE_URL=normalize_database_url(env.get("DATABASE_URL", cls.DATABASE_URL)),
            BASE_URL=env.get("BASE_URL", cls.BASE_URL).rstrip("/"),
            MAIL_URL=env.get("MAIL_URL", cls.MAIL_URL),
            MAIL_FROM=env.get("MAIL_FROM", cls.MAIL_FROM),
            POSTAL_ADDRESS=env.get("POSTAL_ADDRESS", ""),
            LIST_ID=env.get("LIST_ID", cls.LIST_ID),
            FREE_STORIES_PER_MONTH=_int(env, "FREE_STORIES_PER_MONTH", 10),
            TRIAL_DAYS=_int(env, "TRIAL_DAYS", 7),
            STRIPE_SECRET_KEY=env.get("STRIPE_SECRET_KEY") or None,
            STRIPE_WEBHOOK_SECRET=env.get("STRIPE_WEBHOOK_SECRET") or None,
            STRIPE_PRICE_ID=env.get("STRIPE_PRICE_ID") or None,
            STRIPE_API_BASE=env.get("STRIPE_API_BASE") or None,
            STRIPE_DEV_STANDIN=_bool(env, "STRIPE_DEV_STANDIN"),
            BILLING_GRACE_DAYS=_int(env, "BILLING_GRACE_DAYS", 3),
            PRICE_LABEL=env.get("PRICE_LABEL", "$5/month"),
            RATE_LIMIT_PER_IP=env.get("RATE_LIMIT_PER_IP", cls.RATE_LIMIT_PER_IP),
            RATE_LIMIT_PER_ADDRESS=env.get("RATE_LIMIT_PER_ADDRESS", cls.RATE_LIMIT_PER_ADDRESS),
            SMTP_TIMEOUT=_int(env, "SMTP_TIMEOUT", 30, minimum=1),
            STAFF_IDLE_MINUTES=_int(env, "STAFF_IDLE_MINUTES", 60, minimum=1),
            EDITION_READING_MINUTES=_int(env, "EDITION_READING_MINUTES", 5, minimum=1),
            EDITION_WINDOW_HOURS=_int(env, "EDITION_WINDOW_HOURS", 72, minimum=1),
            OUTBOX_DIR=env.get("OUTBOX_DIR", ""),
            BLINDSPOT_MAX_SHARE=_float(env, "BLINDSPOT_MAX_SHARE", 0.2, 0.0, 1.0),
            BLINDSPOT_MIN_SOURCES=_int(env, "BLINDSPOT_MIN_SOURCES", 3, minimum=1),
            STORIES_API_TOKEN=env.get("STORIES_API_TOKEN") or None,
            STORIES_API_MAX_BYTES=_int(env, "STORIES_API_MAX_BYTES", 2 * 1024 * 1024, minimum=1),
            STORIES_CLUSTER_WINDOW_HOURS=_int(env, "STORIES_CLUSTER_WINDOW_HOURS", 48, minimum=1),
            STORIES_AUTO_PUBLISH_OUTLETS=(
                _int(env, "STORIES_AUTO_PUBLISH_OUTLETS", 0, minimum=1)
                if env.get("STORIES_AUTO_PUBLISH_OUTLETS")
                else None
            ),
            FEEDS_INTERVAL_MINUTES=_int(env, "FEEDS_INTERVAL_MINUTES", 30, minimum=1),
            FEEDS_MAX_BACKOFF_HOURS=_int(env, "FEEDS_MAX_BACKOFF_HOURS", 24, minimum=1),
            FEEDS_TIMEOUT_SECONDS=_float(env, "FEEDS_TIMEOUT_SECONDS", 20.0, 0.1, 600.0),
            FEEDS_MAX_BYTES=_int(env, "FEEDS_MAX_BYTES", 5 * 1024 * 1024, minimum=1024),
            FEEDS_MAX_REDIRECTS=_int(env, "FEEDS_MAX_REDIRECTS", 5, minimum=0),
            FEEDS_ALLOW_PRIVATE=_bool(env, "FEEDS_ALLOW_PRIVATE"),
            SEND_CONNECTIONS=_int(env, "SEND_CONNECTIONS", 4, minimum=1),
            SEND_RATE_PER_SECOND=_float(env, "SEND_RATE_PER_SECOND", 0.0, 0.0, 1e6),
            SEND_BATCH_SIZE=_int(env, "SEND_BATCH_SIZE", 200, minimum=1),
            SEND_MAX_ATTEMPTS=_int(env, "SEND_MAX_ATTEMPTS", 5, minimum=1),
            SEND_RETRY_BASE_SECONDS=_float(env, "SEND_RETRY_BASE_SECONDS", 60.0, 0.0, 86400.0),
            SEND_RETRY_MAX_SECONDS=_float(env, "SEND_RETRY_MAX_SECONDS", 3600.0, 0.0, 86400.0),
            SEND_LEASE_SECONDS=_float(env, "SEND_LEASE_SECONDS", 60.0, 0.1, 86400.0),
            CLICK_FLUSH_SECONDS=_float(env, "CLICK_FLUSH_SECONDS", 1.0, 0.01, 60.0),
            TEMPLATE_CPU_SECONDS=_int(env, "TEMPLATE_CPU_SECONDS", 2, minimum=1),
            TEMPLATE_MEMORY_MB=_int(env, "TEMPLATE_MEMORY_MB", 256, minimum=16),
            TEMPLATE_OUTPUT_MB=_int(env, "TEMPLATE_OUTPUT_MB", 4, minimum=1),
            TEMPLATE_WALL_SECONDS=_float(env, "TEMPLATE_WALL_SECONDS", 10.0, 1.0, 3600.0),
            METRICS_TOKEN=env.get("METRICS_TOKEN") or None,
            LOG_FORMAT=(env.get("LOG_FORMAT") or "text").strip().lower(),
            SENTRY_DSN=env.get("SENTRY_DSN") or None,
            SOFT_BOUNCE_LIMIT=_int(env, "SOFT_BOUNCE_LIMIT", 3, minimum=1),
            SOFT_BOUNCE_WINDOW_DAYS=_int(env, "SOFT_BOUNCE_WINDOW_DAYS", 15, minimum=1),
            PAUSE_MIN_DELIVERIES=_int(env, "PAUSE_MIN_DELIVERIES", 1000, minimum=1),
            PAUSE_COMPLAINT_RATE=_float(env, "PAUSE_COMPLAINT_RATE", 0.003, 0.0, 1.0),
            PAUSE_HARD_BOUNCE_RATE=_float(env, "PAUSE_HARD_BOUNCE_RATE", 0.05, 0.0, 1.0),
            SES_TOPIC_ARNS=env.get("SES_TOPIC_ARNS") or None,
            POSTMARK_WEBHOOK_USER=env.get("POSTMARK_WEBHOOK_USER") or None,
            POSTMARK_WEBHOOK_PASSWORD=env.get("POSTMARK_WEBHOOK_PASSWORD") or None,
            MAILGUN_WEBHOOK_SIGNING_KEY=env.get("MAILGUN_WEBHOOK_SIGNING_KEY") or None,
            MAILGUN_WEBHOOK_TOLERANCE_SECONDS=_int(
                env, "MAILGUN_WEBHOOK_TOLERANCE_SECONDS", 300, minimum=1
            ),
            SENDGRID_WEBHOOK_PUBLIC_KEY=env.get("SENDGRID_WEBHOOK_PUBLIC_KEY") or None,
            SENDGRID_WEBHOOK_TOLERANCE_SECONDS=_int(
                env, "SENDGRID_WEBHOOK_TOLERANCE_SECONDS", 300, minimum=1
            ),
            BOUNCE_ADDRESS=env.get("BOUNCE_ADDRESS", "").strip(),
            BOUNCE_IMAP_URL=env.get("BOUNCE_IMAP_URL", "").strip(),
            BOUNCE_FETCH_MINUTES=_int(env, "BOUNCE_FETCH_MINUTES", 10, minimum=1),
            DKIM_SELECTOR=env.get("DKIM_SELECTOR", "").strip(),
            DKIM_PRIVATE_KEY=env.get("DKIM_PRIVATE_KEY", ""),
            DKIM_PRIVATE_KEY_FILE=env.get("DKIM_PRIVATE_KEY_FILE", "").strip(),
            DKIM_ED25519_SELECTOR=env.get("DKIM_ED25519_SELECTOR", "").strip(),
            DKIM_ED25519_PRIVATE_KEY_FILE=env.get("DKIM_ED25519_PRIVATE_KEY_FILE", "").strip(),
            FEEDBACK_SENDER_ID=env.get("FEEDBACK_SENDER_ID", "bsd").strip() or "bsd",
            DNS_RESOLVER=env.get("DNS_RESOLVER", "").strip(),
            IMPORT_INVITES_PER_RUN=_int(env, "IMPORT_INVITES_PER_RUN", 60, minimum=1),
            IMPORT_MAX_BYTES=_int(env, "IMPORT_MAX_BYTES", 100 * 1024 * 1024, minimum=1),
            ERASE_TOKEN_MAX_AGE=_int(env, "ERASE_TOKEN_MAX_AGE", 24 * 3600, minimum=60),
            WORKER_TICK_SECONDS=_int(env, "WORKER_TICK_SECONDS", 60, minimum=1),
        )
        known = {f.name for f in fields(cls)}
        for key, value in overrides.items():
            if key in known:
                setattr(cfg, key, value)
            else:
                cfg.extra[key] = value
        cfg.DATABASE_URL = normalize_database_url(cfg.DATABASE_URL)
        cfg.validate()
        return cfg

    def validate(self) -> None:
        if self.production:
            if not self.SECRET_KEY or len(self.SECRET_KEY) < 32:
                raise ConfigError(
                    "SECRET_KEY must be set (32+ characters) when NEWSLETTER_ENV=production"
                )
            if self.DEBUG:
                raise ConfigError("debug mode must be off when NEWSLETTER_ENV=production")
            if self.MAIL_URL.startswith("outbox:"):
                raise ConfigError("MAIL_URL must name a real mail server in production")
            if not self.POSTAL_ADDRESS.strip():
                raise ConfigError(
                    "POSTAL_ADDRESS must be set when NEWSLETTER_ENV=production: the law "
                    "(CAN-SPAM) wants a postal address in every email"
                )
            if self.STRIPE_DEV_STANDIN:
                raise ConfigError(
                    "STRIPE_DEV_STANDIN is for development only (a local stand-in for Stripe); "
                    "unset it when NEWSLETTER_ENV=production"
                )
        elif not self.SECRET_KEY:
            self.SECRET_KEY = _dev_secret_key(self.instance)
        if self.BOUNCE_ADDRESS and not re.fullmatch(
            r"[^@\s+]+@[^@\s]+\.[^@\s]+", self.BOUNCE_ADDRESS
        ):
            raise ConfigError(
                f"BOUNCE_ADDRESS must be a plain address without '+', got {self.BOUNCE_ADDRESS!r}"
            )
        for name in ("RATE_LIMIT_PER_IP", "RATE_LIMIT_PER_ADDRESS"):
            parse_rate(getattr(self, name), name)
        if self.LOG_FORMAT not in ("text", "json"):
            raise ConfigError(f"LOG_FORMAT must be text or json, not {self.LOG_FORMAT!r}")
        if self.METRICS_TOKEN is not None and len(self.METRICS_TOKEN) < 16:
            raise ConfigError("METRICS_TOKEN must be at least 16 characters")


def parse_rate(raw: str, name: str = "rate") -> tuple[int, int]:
    """'count/seconds' -> (count, seconds)."""
    try:
        count, seconds = (int(part) for part in raw.split("/", 1))
    except ValueError:
        raise ConfigError(f"{name} must look like 'count/seconds', got {raw!r}") from None
    if count < 1 or seconds < 1:
        raise ConfigError(f"{name} must be positive, got {raw!r}")
    return count, seconds
