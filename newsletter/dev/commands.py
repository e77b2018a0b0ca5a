"""`newsletter dev-stripe`: the local stand-in for Stripe's hosted pages (see
`newsletter.dev.stripe_standin`). Thin: check the settings, start the server."""

from __future__ import annotations

import sys

import click
from flask import current_app
from flask.cli import with_appcontext


@click.command("dev-stripe", help="Development only: Stripe's Checkout and portal pages, locally.")
@click.option("--port", default=8420, show_default=True, help="Port to listen on (loopback).")
@click.option(
    "--upstream",
    default="http://127.0.0.1:8421",
    show_default=True,
    help="localstripe's URL (Stripe's API, locally).",
)
@with_appcontext
def dev_stripe(port: int, upstream: str) -> None:
    from werkzeug.serving import run_simple

    from newsletter.dev.stripe_standin import StandIn, create_standin, prepare_when_ready

    cfg = current_app.config
    if cfg["PRODUCTION"]:
        click.echo("error: the Stripe stand-in is for development only", err=True)
        sys.exit(1)
    secrets = [s.strip() for s in (cfg.get("STRIPE_WEBHOOK_SECRET") or "").split(",") if s.strip()]
    if not secrets:
        click.echo("error: STRIPE_WEBHOOK_SECRET must be set to sign the webhooks", err=True)
        sys.exit(1)
    standin = StandIn(
        upstream=upstream.rstrip("/"),
        public_url=(cfg.get("STRIPE_API_BASE") or f"http://localhost:{port}").rstrip("/"),
        webhook_url=f"{cfg['BASE_URL']}/webhooks/stripe",
        webhook_secret=secrets[0],
    )
    prepare_when_ready(standin)
    click.echo(f"TEST MODE: Stripe stand-in on port {port}, API calls go on to {upstream}")
    run_simple("127.0.0.1", port, create_standin(standin), threaded=True)
