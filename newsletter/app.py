"""The application factory."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from dotenv import load_dotenv
from flask import Flask, Response, abort, jsonify, render_template, request
from flask.sessions import SecureCookieSessionInterface
from flask_wtf.csrf import CSRFError
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import text
from werkzeug.exceptions import HTTPException
from werkzeug.middleware.proxy_fix import ProxyFix

from newsletter import logs, metrics
from newsletter.config import TEMPLATES_DIR, Config
from newsletter.db import Database, close_session, db_session
from newsletter.deliverability import dkim
from newsletter.errors import UNEXPECTED_ERROR, NewsletterError, RateLimited
from newsletter.extensions import csrf
from newsletter.headers import (
    CONTENT_SECURITY_POLICY,
    STRIPE_PAGES,
    content_security_policy,
    security_headers,
)
from newsletter.inputs import IdConverter
from newsletter.lean import LeanRoutes
from newsletter.mail import sending
from newsletter.mail.templates import samples, store
from newsletter.middleware import ENDPOINT_KEY, RequestContext
from newsletter.web import refuse_unstorable

log = logging.getLogger(__name__)

__all__ = ["CONTENT_SECURITY_POLICY", "create_app", "security_headers"]


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the serializer made once per set of keys
    instead of on every request (every request opens the session)."""

    _made: tuple[tuple[Any, ...], URLSafeTimedSerializer | None] | None = None

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        keys = (app.secret_key, *(app.config["SECRET_KEY_FALLBACKS"] or ()))
        made = self._made
        if made is None or made[0] != keys:
            made = self._made = (keys, super().get_signing_serializer(app))
        return made[1]


def create_app(config: Config | dict[str, Any] | None = None) -> Flask:
    if os.environ.get("NEWSLETTER_ENV", "development") != "production":
        load_dotenv(override=False)
    if isinstance(config, dict):
        config = Config.from_env(**config)
    cfg = config or Config.from_env()

    app = Flask(
        __name__,
        template_folder=str(TEMPLATES_DIR / "web"),
        static_folder=str(Path(__file__).parent / "static"),
    )
    settings = asdict(cfg)
    settings.pop("extra")
    app.session_interface = _SessionInterface()
    app.config.update(settings)
    app.config.update(cfg.extra)
    app.config.update(
        DEBUG=cfg.DEBUG,
        NEWSLETTER_CONFIG=cfg,
        PRODUCTION=cfg.production,
        OUTBOX_PATH=cfg.outbox_dir,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=cfg.production or cfg.BASE_URL.startswith("https://"),
        SESSION_COOKIE_NAME="bsd_session",
        PERMANENT_SESSION_LIFETIME=timedelta(days=30),
        WTF_CSRF_TIME_LIMIT=None,  # tied to the session instead of a clock
        MAX_CONTENT_LENGTH=1024 * 1024,
    )
    # No redirects invented by the router: "/r//evil" is a 404, not a 308 somewhere.
    app.url_map.merge_slashes = False
    # `<int:…>` in every rule: bounded to the database's integer range (a larger id: 404).
    app.url_map.converters["int"] = IdConverter

    # The hot JSON routes, answered before Flask (newsletter/lean.py); a view declares
    # its fast path with `lean.fast_path`, and its blueprint's registration adds it here.
    lean = LeanRoutes(app, app.wsgi_app)
    app.wsgi_app = app.extensions["lean_routes"] = lean  # type: ignore[method-assign]
    db = Database(cfg.DATABASE_URL)
    app.extensions["db"] = db
    # Loaded once here, so a bad key stops the start rather than the first send.
    app.extensions["dkim"] = dkim.signer_from_config(app.config)
    sending.install(db.sessionmaker)
    store.install(app, samples.every_context)  # every email uses the published templates
    app.teardown_appcontext(close_session)
    logs.init_error_reporting(cfg.SENTRY_DSN, cfg.ENV)
    app.before_request(_note_endpoint)  # first: every answer is counted by its endpoint
    # The first request hook: before CSRF (whose token lookup breaks on a nameless
    # form field) and before the staff area's 404 check.
    app.before_request(refuse_unstorable)
    csrf.init_app(app)

    from newsletter.auth.views import bp as auth_bp
    from newsletter.readers.views import bp as readers_bp
    from newsletter.stories.views import api as stories_api_bp

    app.register_blueprint(readers_bp)
    app.register_blueprint(auth_bp)
    app.register_blueprint(stories_api_bp)
    from newsletter.editions.views import bp as editions_bp

    app.register_blueprint(editions_bp)  # the public archive and web versions
    from newsletter.tracking.views import init_app as init_tracking

    init_tracking(app)
    # The read confirmation carries a signed per-view token bound to the reader and story:
    # that token, not a form CSRF token, is what proves the page asked for it.
    csrf.exempt("newsletter.tracking.views.confirm_read")
    csrf.exempt("newsletter.readers.views.unsubscribe")  # RFC 8058 one-click POST
    csrf.exempt(stories_api_bp)  # bearer-token API: no cookies, so nothing to forge
    from newsletter.billing.views import bp as billing_bp
    from webhooks import bp as webhooks_bp
    from webhooks import init_app as init_webhooks

    app.register_blueprint(billing_bp)
    init_webhooks(app)
    csrf.exempt(webhooks_bp)  # Stripe signs its webhooks; there is no form or cookie
    from newsletter.admin.views import init_app as init_admin

    init_admin(app)  # /admin: staff only
    if not cfg.production:
        from newsletter.dev.views import bp as dev_bp

        app.register_blueprint(dev_bp)

    _register_core(app)
    _register_errors(app)
    from newsletter.cli import register_commands

    register_commands(app)
    trusted = int(os.environ.get("TRUSTED_PROXIES", "0") or 0)
    if trusted:  # outermost, so that everything inside sees the client's address
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=trusted, x_proto=trusted)  # type: ignore[method-assign]
    # Outermost of all: a request id and a count for every answer.
    app.wsgi_app = RequestContext(app.wsgi_app, trust_request_id=bool(trusted))  # type: ignore[method-assign]
    return app


def _note_endpoint() -> None:
    request.environ[ENDPOINT_KEY] = request.endpoint or "unmatched"


def _register_core(app: Flask) -> None:
    @app.get("/healthz")
    def healthz():  # type: ignore[no-untyped-def]
        try:
            db_session().execute(text("SELECT 1"))
        except Exception as exc:  # any driver error means "not healthy"
            log.warning("health check failed: %s", exc)
            return jsonify(status="error", error="database unavailable"), 503
        return jsonify(status="ok")

    @app.get("/metrics")
    def metrics_endpoint():  # type: ignore[no-untyped-def]
        token = app.config["METRICS_TOKEN"]
        if not token:
            abort(404)
        if not metrics.authorized(request.headers.get("Authorization"), token):
            return (
                jsonify(error="This needs the metrics bearer token."),
                401,
                {"WWW-Authenticate": 'Bearer realm="metrics"'},
            )
        body, content_type = metrics.exposition(app.extensions["db"].engine)
        return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})

    hsts = app.config["SESSION_COOKIE_SECURE"]
    default_csp = CONTENT_SECURITY_POLICY
    if app.config.get("STRIPE_DEV_STANDIN") and app.config.get("STRIPE_API_BASE"):
        # The local stand-in's pages take the place of Stripe's (development only).
        standin = urlsplit(app.config["STRIPE_API_BASE"])
        default_csp = content_security_policy(f"{STRIPE_PAGES} {standin.scheme}://{standin.netloc}")

    @app.after_request
    def add_security_headers(response):  # type: ignore[no-untyped-def]
        # One pass over the headers, since werkzeug's `setdefault` scans them all for
        # every header (every request pays).
        headers = response.headers
        present = {name.lower() for name, _ in headers}
        csp = (
            headers.get("Content-Security-Policy") if "content-security-policy" in present else None
        )
        for name, value in security_headers(present, csp, hsts=hsts, default_csp=default_csp):
            headers.add(name, value)
        return response

    _register_display(app)

    @app.context_processor
    def inject_reader():  # type: ignore[no-untyped-def]
        from newsletter.auth.session import current_reader

        return {"current_reader": current_reader(), "production": app.config["PRODUCTION"]}


def _register_display(app: Flask) -> None:
    """Template filters every page shares, and the favicon (browsers ask for it at the
    root whatever the page links)."""
    from markupsafe import Markup

    from newsletter.text import plural
    from newsletter.timezones import local_time_label

    app.add_template_filter(plural, "plural")

    @app.template_filter("long_date")
    def long_date(day: date | None) -> str:
        return f"{day:%B} {day.day}, {day.year}" if day else ""

    @app.template_filter("local_time")
    def local_time(moment: datetime, zone: str | None = None) -> Markup:
        # Without a known zone the page shows UTC, and static/app.js rewrites it to the
        # browser's zone; `data-local` marks the ones it may rewrite.
        aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
        attrs = "" if zone else " data-local"
        # The markup is a constant here; format() escapes both values.
        return Markup(f'<time datetime="{{}}"{attrs}>{{}}</time>').format(  # noqa: S704
            aware.isoformat(), local_time_label(aware, zone)
        )

    @app.get("/favicon.ico")
    def favicon():  # type: ignore[no-untyped-def]
        response = app.send_static_file("favicon.svg")
        response.headers["Cache-Control"] = "public, max-age=86400"
        return response


def _wants_json() -> bool:
    return request.path.startswith("/api/") or request.path.startswith("/webhooks/")


def _register_errors(app: Flask) -> None:
    def error_response(status: int, message: str, headers: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        if _wants_json():
            return jsonify(error=message), status, headers or {}
        return render_template("error.html", status=status, message=message), status, headers or {}

    @app.errorhandler(NewsletterError)
    def domain_error(exc: NewsletterError):  # type: ignore[no-untyped-def]
        close_session(exc)
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        return error_response(exc.status_code, exc.message, headers)

    @app.errorhandler(CSRFError)
    def csrf_error(exc: CSRFError):  # type: ignore[no-untyped-def]
        return error_response(
            400,
            "This form has expired or was not sent from our site. Go back, reload the page "
            "and try again.",
        )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException):  # type: ignore[no-untyped-def]
        messages = {404: "We couldn't find that page.", 405: "That action isn't allowed here."}
        return error_response(exc.code or 500, messages.get(exc.code or 0, exc.description or ""))

    @app.errorhandler(Exception)
    def unexpected(exc: Exception):  # type: ignore[no-untyped-def]
        log.exception("unhandled error")
        close_session(exc)
        return error_response(500, UNEXPECTED_ERROR)
