"""One logging set-up for every process: the web app (gunicorn), the worker and the CLI.

`LOG_FORMAT=text` (development) prints one readable line per record; `LOG_FORMAT=json`
(production) prints one JSON object per line, for a log shipper. Either way each line
carries the request id of the web request or the name of the scheduled job it belongs to,
and passes through `redact` last, so no sign-in token, session cookie, Stripe secret or
full email address reaches a log, whatever a caller put in its message.
"""

from __future__ import annotations

import logging
import logging.config
import os
import re
from contextvars import ContextVar
from typing import Any

from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.json import JsonFormatter

# Set by the request middleware and by `jobs.tasks`; read by every log line.
request_id: ContextVar[str | None] = ContextVar("request_id", default=None)
job_name: ContextVar[str | None] = ContextVar("job_name", default=None)

FORMATS = ("text", "json")
_DATE = "%Y-%m-%dT%H:%M:%S%z"
_TEXT = "%(asctime)s %(levelname)s %(name)s%(context)s %(message)s"
_JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(request_id)s %(job)s"

# Tokens travel in these URL paths (sign-in, confirmation, tracked link, unsubscribe).
_TOKEN_PATH = re.compile(r"/(signin|confirm|r|unsubscribe)/[^\s/?#\"'<>]+")
_TOKEN_PARAM = re.compile(r"\b(token|code|key|secret|password)=[^\s&\"'<>]+", re.IGNORECASE)
# An itsdangerous token (payload.timestamp.signature) seen anywhere else in a line.
_SIGNED = re.compile(r"\b[A-Za-z0-9_-]{8,}(?:\.[A-Za-z0-9_-]+){1,2}\.[A-Za-z0-9_-]{20,}")
_STRIPE_SECRET = re.compile(r"\b(sk|rk)_(test|live)_[A-Za-z0-9]+|\bwhsec_[A-Za-z0-9+/=]+")
_SESSION_COOKIE = re.compile(r"\b(bsd_session|session)=[^;\s\"']+")
_BEARER = re.compile(r"\bBearer\s+[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
# An address keeps its first character and its domain: enough to follow a problem with
# one provider, not enough to name the reader.
_EMAIL = re.compile(
    r"([A-Za-z0-9!#$%&'+/=?^_`{|}~-])[A-Za-z0-9.!#$%&'+/=?^_`{|}~-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
)


def redact(text: str) -> str:
    """`text` with secrets, tokens and email addresses masked; idempotent."""
    text = _TOKEN_PATH.sub(lambda m: f"/{m.group(1)}/[token]", text)
    text = _TOKEN_PARAM.sub(lambda m: f"{m.group(1)}=[redacted]", text)
    text = _STRIPE_SECRET.sub("[secret]", text)
    text = _SESSION_COOKIE.sub(lambda m: f"{m.group(1)}=[redacted]", text)
    text = _BEARER.sub("Bearer [redacted]", text)
    text = _SIGNED.sub("[token]", text)
    return _EMAIL.sub(r"\1***@\2", text)


class _Context(logging.Filter):
    """Adds the request id and job name to every record (`context` for the text format)."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid, job = request_id.get(), job_name.get()
        record.request_id = rid
        record.job = job
        record.context = f" [request {rid}]" if rid else f" [job {job}]" if job else ""
        return True


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonLinesFormatter(JsonFormatter):
    """One JSON object per line; null request id / job fields are left out."""

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        for name in ("request_id", "job"):
            if log_data.get(name) is None:
                log_data.pop(name, None)
        return log_data

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def dict_config(log_format: str, level: str = "INFO") -> dict[str, Any]:
    """The `logging.config.dictConfig` for `log_format`; gunicorn takes the same one
    (`logconfig_dict`), so its error and access logs look like every other line."""
    if log_format not in FORMATS:
        raise ValueError(f"LOG_FORMAT must be one of {', '.join(FORMATS)}, not {log_format!r}")
    formatter: dict[str, Any]
    if log_format == "json":
        formatter = {
            "()": f"{__name__}.JsonLinesFormatter",
            "fmt": _JSON_FIELDS,
            "datefmt": _DATE,
            "rename_fields": {"asctime": "time", "levelname": "level", "name": "logger"},
            # `context` is the text format's; everything else a record carries is kept.
            "reserved_attrs": [*RESERVED_ATTRS, "taskName", "context"],
        }
    else:
        formatter = {"()": f"{__name__}.TextFormatter", "fmt": _TEXT, "datefmt": _DATE}
    handler = {
        "class": "logging.StreamHandler",
        "formatter": "main",
        "filters": ["context"],
        "stream": "ext://sys.stderr",
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"context": {"()": f"{__name__}._Context"}},
        "formatters": {"main": formatter},
        "handlers": {"main": handler},
        "root": {"level": level, "handlers": ["main"]},
        "loggers": {
            # gunicorn's own loggers: the same handler, not theirs as well.
            "gunicorn.error": {"level": level, "handlers": [], "propagate": True},
            "gunicorn.access": {"level": "INFO", "handlers": [], "propagate": True},
        },
    }


def configure(log_format: str | None = None, level: str | None = None) -> None:
    """Set up logging for this process from `LOG_FORMAT` and `LOG_LEVEL` (or the
    arguments); replaces earlier set-ups, so calling it twice is harmless."""
    log_format = (log_format or os.environ.get("LOG_FORMAT") or "text").strip().lower()
    level = (level or os.environ.get("LOG_LEVEL") or "INFO").strip().upper()
    logging.config.dictConfig(dict_config(log_format, level))


_reporting_to: str | None = None


def init_error_reporting(dsn: str | None, environment: str) -> None:
    """Send unhandled errors to Sentry when `SENTRY_DSN` is set; each event passes
    through `redact` and carries no cookies, headers or addresses."""
    global _reporting_to
    if not dsn or dsn == _reporting_to:
        return
    import sentry_sdk

    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        send_default_pii=False,
        traces_sample_rate=0.0,
        before_send=_scrub_event,
        before_breadcrumb=lambda crumb, _hint: _scrubbed(crumb),
    )
    _reporting_to = dsn


def _scrub_event(event: Any, _hint: Any) -> Any:
    request = event.get("request")
    if isinstance(request, dict):
        for key in ("cookies", "headers", "data", "env"):
            request.pop(key, None)
    event.pop("user", None)
    return _scrubbed(event)


def _scrubbed(value: Any) -> Any:
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: _scrubbed(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrubbed(v) for v in value]
    return value
