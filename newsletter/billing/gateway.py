"""Stripe, behind one small class: the only module that talks to Stripe's API.

`StripeGateway` wraps a per-app `stripe.StripeClient` (never the library's global
settings, so two apps in one process, e.g. tests, can point at two servers) and hands
back plain dicts, which the services read like the JSON in Stripe's API reference.
Reads go through the client's `raw_request`: the same requests, retries, API version and
errors, without building typed objects that would only be turned back into dicts (the
webhook handlers re-read a subscription for nearly every event).
`STRIPE_API_BASE` points it at a test server (localstripe, or the tests' fake).
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import threading
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

import stripe
import urllib3
from flask import Flask, current_app

from newsletter.errors import NewsletterError

# The price is found again by this key, so `newsletter stripe setup` can run twice.
PRICE_LOOKUP_KEY = "both_sides_daily_monthly"
# A fixed product id: Stripe lets us choose it, and it makes the product findable too.
PRODUCT_ID = "both_sides_daily"
PRODUCT_NAME = "Both Sides Daily"
PRICE_AMOUNT = 500  # cents
PRICE_CURRENCY = "usd"
# Seconds to wait for Stripe's answer (stripe-python's own default), on either transport.
READ_TIMEOUT = 80.0


class BillingNotConfigured(NewsletterError):
    status_code = 404

    def __init__(self, message: str = "Billing is not configured on this site yet.") -> None:
        super().__init__(message)


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def is_not_found(exc: stripe.StripeError) -> bool:
    return isinstance(exc, stripe.InvalidRequestError) and exc.http_status == 404


class Urllib3Client(stripe.HTTPClient):
    """stripe-python's transport on urllib3 directly (stripe-python supports pluggable
    HTTP clients; its default goes through requests, whose per-call session, cookie and
    environment handling costs more than the rest of a webhook). The library keeps doing
    everything else: authentication, API version, idempotency keys, retries, errors.

    One thread-safe pool of keep-alive connections; TLS verified against stripe-python's
    certificate bundle; `HTTPS_PROXY` honoured, read once."""

    name = "urllib3"

    def __init__(self, timeout: float = READ_TIMEOUT, proxy: str | None = None) -> None:
        super().__init__(verify_ssl_certs=True, proxy=proxy)
        self._timeout = urllib3.Timeout(connect=30, read=timeout)
        bundle = stripe.ca_bundle_path
        self._pool: urllib3.PoolManager = (
            urllib3.ProxyManager(proxy, maxsize=10, cert_reqs="CERT_REQUIRED", ca_certs=bundle)
            if proxy
            else urllib3.PoolManager(maxsize=10, cert_reqs="CERT_REQUIRED", ca_certs=bundle)
        )

    # The body is bytes, as from stripe-python's own clients, though its base class says str.
    def request(  # type: ignore[override]
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[bytes, int, Mapping[str, str]]:
        try:
            response = self._pool.request(
                method.upper(),
                url,
                headers=dict(headers or {}),
                body=post_data,
                timeout=self._timeout,
                retries=False,  # stripe-python retries, with its own backoff and rules
                redirect=False,
            )
        except urllib3.exceptions.SSLError as exc:
            raise stripe.APIConnectionError(
                f"Could not verify Stripe's TLS certificate: {exc}", should_retry=False
            ) from exc
        except (urllib3.exceptions.TimeoutError, urllib3.exceptions.ProtocolError,
                urllib3.exceptions.NewConnectionError) as exc:  # fmt: skip
            raise stripe.APIConnectionError(
                f"Network error talking to Stripe: {exc}", should_retry=True
            ) from exc
        except urllib3.exceptions.HTTPError as exc:
            raise stripe.APIConnectionError(
                f"Error talking to Stripe: {exc}", should_retry=False
            ) from exc
        return response.data, response.status, response.headers

    def request_stream(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[Any, int, Mapping[str, str]]:
        # Only file downloads stream; billing never asks for one.
        raise NotImplementedError("streaming responses are not used here")

    def close(self) -> None:
        self._pool.clear()


class KeptAliveGet:
    """GETs of Stripe's API on one kept-alive connection per thread, for the reads a
    webhook makes for nearly every event.

    stripe-python spends several times the CPU http.client does on a GET (its request
    options, user-agent telemetry, log lines formatted whether or not anyone logs them;
    then urllib3's pool). This sends what the library sends for a GET (the key, its
    pinned `Stripe-Version`) and answers only a 200: anything else (an error status, a
    dropped connection, a timeout) gives None, and the caller sends the request again
    through stripe-python, whose retries, backoff and typed errors then apply. A GET
    changes nothing at Stripe, so trying it twice is safe. Not used behind a proxy."""

    def __init__(self, secret_key: str, api_base: str, *, timeout: float = READ_TIMEOUT) -> None:
        url = urlsplit(api_base)
        self._https = url.scheme == "https"
        self._host = url.hostname or ""
        self._port = url.port
        self._prefix = url.path.rstrip("/")
        self._timeout = timeout
        self._tls = (
            ssl.create_default_context(cafile=stripe.ca_bundle_path) if self._https else None
        )
        self._headers = {
            "Authorization": f"Bearer {secret_key}",
            "Stripe-Version": stripe.api_version,
            "User-Agent": f"Stripe/v1 PythonBindings/{stripe.VERSION}",
        }
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is None:
            if self._https:
                connection = http.client.HTTPSConnection(
                    self._host, self._port, timeout=self._timeout, context=self._tls
                )
            else:
                connection = http.client.HTTPConnection(
                    self._host, self._port, timeout=self._timeout
                )
            self._local.connection = connection
        return connection

    def get(self, path: str, params: Mapping[str, str | int]) -> dict[str, Any] | None:
        """The JSON of a 200 to GET `path` (`params`: flat values), else None."""
        target = self._prefix + path + ("?" + urlencode(params) if params else "")
        connection = self._connection()
        try:
            connection.request("GET", target, headers=self._headers)
            response = connection.getresponse()
            body = response.read()
        except (OSError, http.client.HTTPException):
            self.close()  # the next GET connects afresh
            return None
        if response.will_close:
            self.close()
        if response.status != 200:
            return None
        try:
            return json.loads(body)  # type: ignore[no-any-return]
        except ValueError:
            return None

    def close(self) -> None:
        connection = getattr(self._local, "connection", None)
        if connection is not None:
            connection.close()
            self._local.connection = None


class StripeGateway:
    def __init__(
        self, secret_key: str, *, api_base: str | None = None, max_network_retries: int = 2
    ) -> None:
        proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or None
        self._kept_alive = (
            None if proxy else KeptAliveGet(secret_key, api_base or stripe.DEFAULT_API_BASE)
        )
        self.client = stripe.StripeClient(
            secret_key,
            base_addresses={"api": api_base.rstrip("/")} if api_base else None,
            # Stripe's own advice: retry network errors with idempotency keys (the library
            # adds them to POSTs), so a blip does not fail a checkout.
            max_network_retries=max_network_retries,
            http_client=Urllib3Client(proxy=proxy),
        )

    # --- customers -----------------------------------------------------------------------

    def create_customer(
        self, *, email: str, reader_id: int, idempotency_key: str
    ) -> dict[str, Any]:
        return _plain(
            self.client.v1.customers.create(
                params={"email": email, "metadata": {"reader_id": str(reader_id)}},
                options={"idempotency_key": idempotency_key},
            )
        )

    def _get(self, path: str, **params: str | int) -> dict[str, Any]:
        if self._kept_alive is not None:
            found = self._kept_alive.get(path, params)
            if found is not None:
                return found
        response = self.client.raw_request("get", path, **params)
        return response.data  # type: ignore[no-any-return]

    def retrieve_customer(self, customer_id: str) -> dict[str, Any]:
        """A deleted customer comes back as `{"id": …, "deleted": true}`."""
        return self._get(f"/v1/customers/{quote(customer_id, safe='')}")

    def delete_customer(self, customer_id: str) -> None:
        """Delete a customer (Stripe cancels its subscriptions at once). One already gone
        counts as deleted: a retried erasure must get through."""
        try:
            self.client.v1.customers.delete(customer_id)
        except stripe.StripeError as exc:
            if not is_not_found(exc):
                raise

    # --- subscriptions and invoices ------------------------------------------------------

    def retrieve_subscription(self, subscription_id: str) -> dict[str, Any]:
        return self._get(f"/v1/subscriptions/{quote(subscription_id, safe='')}")

    def list_subscriptions(self, *, page_size: int = 100) -> Iterator[list[dict[str, Any]]]:
        """Every subscription that is not canceled or expired, a page at a time.

        Not filtered by price in the request (localstripe does not support the filter);
        the caller keeps the ones for our price."""
        params: dict[str, Any] = {"limit": page_size}
        while True:
            page = self._get("/v1/subscriptions", **params)
            data: list[dict[str, Any]] = page["data"]
            yield data
            if not page.get("has_more") or not data:
                return
            params = {"limit": page_size, "starting_after": data[-1]["id"]}

    def retrieve_invoice(self, invoice_id: str) -> dict[str, Any]:
        return self._get(f"/v1/invoices/{quote(invoice_id, safe='')}")

    # --- checkout and portal -------------------------------------------------------------

    def create_checkout_session(self, params: dict[str, Any]) -> dict[str, Any]:
        return _plain(self.client.v1.checkout.sessions.create(params=params))  # type: ignore[arg-type]

    def retrieve_checkout_session(self, session_id: str) -> dict[str, Any]:
        return self._get(f"/v1/checkout/sessions/{quote(session_id, safe='')}")

    def expire_checkout_session(self, session_id: str) -> dict[str, Any]:
        return _plain(self.client.v1.checkout.sessions.expire(session_id))

    def create_portal_session(self, *, customer: str, return_url: str) -> dict[str, Any]:
        return _plain(
            self.client.v1.billing_portal.sessions.create(
                params={"customer": customer, "return_url": return_url}
            )
        )

    # --- set-up --------------------------------------------------------------------------

    def find_price(self, lookup_key: str) -> dict[str, Any] | None:
        page = self.client.v1.prices.list(
            params={"lookup_keys": [lookup_key], "active": True, "limit": 1}
        )
        return _plain(page.data[0]) if page.data else None

    def retrieve_product(self, product_id: str) -> dict[str, Any] | None:
        try:
            return _plain(self.client.v1.products.retrieve(product_id))
        except stripe.StripeError as exc:
            if is_not_found(exc):
                return None
            raise

    def create_product(self, *, product_id: str, name: str) -> dict[str, Any]:
        return _plain(self.client.v1.products.create(params={"id": product_id, "name": name}))

    def create_price(
        self, *, product: str, unit_amount: int, currency: str, lookup_key: str
    ) -> dict[str, Any]:
        return _plain(
            self.client.v1.prices.create(
                params={
                    "product": product,
                    "unit_amount": unit_amount,
                    "currency": currency,
                    "recurring": {"interval": "month"},
                    "lookup_key": lookup_key,
                    # Moves the key from an older price, so the key always names the
                    # price new readers get.
                    "transfer_lookup_key": True,
                }
            )
        )


def configured(app: Flask | None = None) -> bool:
    """Whether readers can start a checkout: a secret key and a price to sell."""
    cfg = (app or current_app).config
    return bool(cfg.get("STRIPE_SECRET_KEY")) and bool(cfg.get("STRIPE_PRICE_ID"))


def gateway(app: Flask | None = None) -> StripeGateway:
    """The app's gateway; `BillingNotConfigured` without `STRIPE_SECRET_KEY`."""
    app = app or current_app._get_current_object()  # type: ignore[attr-defined]
    existing = app.extensions.get("stripe_gateway")
    if existing is not None:
        return existing
    key = app.config.get("STRIPE_SECRET_KEY")
    if not key:
        raise BillingNotConfigured()
    made = StripeGateway(key, api_base=app.config.get("STRIPE_API_BASE"))
    app.extensions["stripe_gateway"] = made
    return made
