"""`newsletter stripe setup` and `newsletter stripe reconcile`: thin, they call services."""

from __future__ import annotations

import sys

import click
import stripe
from flask.cli import with_appcontext

from newsletter.billing import gateway as gw_module
from newsletter.billing.gateway import (
    PRICE_AMOUNT,
    PRICE_CURRENCY,
    PRICE_LOOKUP_KEY,
    PRODUCT_ID,
    PRODUCT_NAME,
    BillingNotConfigured,
    StripeGateway,
)
from newsletter.billing.reconcile import reconcile
from newsletter.db import get_db


def _gateway_or_exit() -> StripeGateway:
    try:
        return gw_module.gateway()
    except BillingNotConfigured:
        click.echo("error: STRIPE_SECRET_KEY is not set; billing is not configured", err=True)
        sys.exit(1)


@click.group("stripe", help="Stripe billing.")
def stripe_group() -> None:
    pass


def ensure_price(gw: StripeGateway) -> tuple[dict, bool]:
    """The $5/month price, found by its lookup key or made (with its product)."""
    price = gw.find_price(PRICE_LOOKUP_KEY)
    if price is not None:
        return price, False
    if gw.retrieve_product(PRODUCT_ID) is None:
        gw.create_product(product_id=PRODUCT_ID, name=PRODUCT_NAME)
    price = gw.create_price(
        product=PRODUCT_ID,
        unit_amount=PRICE_AMOUNT,
        currency=PRICE_CURRENCY,
        lookup_key=PRICE_LOOKUP_KEY,
    )
    return price, True


@stripe_group.command("setup", help="Create (or find) the product and the $5/month price.")
@with_appcontext
def setup() -> None:
    gw = _gateway_or_exit()
    try:
        price, created = ensure_price(gw)
    except stripe.StripeError as exc:
        click.echo(f"error: Stripe refused: {exc.user_message or exc}", err=True)
        sys.exit(1)
    click.echo(
        f"{'created' if created else 'found'} price {price['id']} "
        f"(lookup key {PRICE_LOOKUP_KEY}); set it in the environment:",
        err=True,
    )
    click.echo(f"STRIPE_PRICE_ID={price['id']}")


@stripe_group.command("reconcile", help="Re-sync every live subscription from Stripe now.")
@with_appcontext
def reconcile_command() -> None:
    gw = _gateway_or_exit()
    report = reconcile(get_db(), gw)
    click.echo(
        f"listed {report.listed}, rechecked {report.rechecked}, changed {report.changed}, "
        f"failed {len(report.failed)}, pruned {report.pruned_events} old events"
    )
    if report.failed:
        sys.exit(1)
