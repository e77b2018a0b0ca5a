"""A small Stripe API over real HTTP, for what localstripe lacks: Checkout Sessions, the
billing portal, prices with lookup keys, and subscriptions in the current API shape
(billing period on the items, `price` objects, `trialing`).

Responses follow Stripe's API reference; requests arrive form-encoded from the real
stripe library (`STRIPE_API_BASE` points it here). Tests drive the "Stripe side" with the
helper methods (a reader completing Checkout, a cancellation in the portal) and build
the matching events with `event()`.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import stripe

Json = dict[str, Any]
FINAL = ("canceled", "incomplete_expired")


def new_id(prefix: str) -> str:
    return f"{prefix}_test_{secrets.token_hex(8)}"


def unflatten(pairs: list[tuple[str, str]]) -> Json:
    """`a[b][0][c]=1` (Stripe's form encoding) → {"a": {"b": [{"c": "1"}]}}."""
    root: Json = {}
    for key, value in pairs:
        parts = re.findall(r"[^\[\]]+", key)
        node = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def lists(node: Any) -> Any:
        if isinstance(node, dict):
            node = {k: lists(v) for k, v in node.items()}
            if node and all(k.isdigit() for k in node):
                return [node[k] for k in sorted(node, key=int)]
        return node

    return lists(root)


class StripeApiError(Exception):
    def __init__(self, status: int, message: str, code: str = "resource_missing") -> None:
        super().__init__(message)
        self.status = status
        self.body = {"error": {"type": "invalid_request_error", "code": code, "message": message}}


class FakeStripe:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.customers: dict[str, Json] = {}
        self.products: dict[str, Json] = {}
        self.prices: dict[str, Json] = {}
        self.subscriptions: dict[str, Json] = {}
        self.invoices: dict[str, Json] = {}
        self.checkout_sessions: dict[str, Json] = {}
        self.portal_sessions: dict[str, Json] = {}
        self.requests: list[tuple[str, str, Json]] = []
        # Seconds each GET of a subscription or an invoice takes (to hold two deliveries
        # side by side).
        self.subscription_delay = 0.0
        self.invoice_delay = 0.0
        # Set to make the next requests fail with a 500, as Stripe sometimes does.
        self.fail_with: int | None = None
        self._server: ThreadingHTTPServer | None = None

    # --- lifecycle -----------------------------------------------------------------------

    def handler_class(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as api.stripe.com
            # Headers and body go out in two writes: without this, Nagle's algorithm and
            # the client's delayed ACK add 40 ms to every keep-alive response.
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def _serve(self, method: str) -> None:
                split = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length).decode() if length else ""
                params = unflatten(parse_qsl(split.query) + parse_qsl(body))
                auth = self.headers.get("Authorization", "")
                if not auth.startswith("Bearer sk_"):
                    status, payload = (
                        401,
                        {
                            "error": {
                                "type": "invalid_request_error",
                                "message": "Invalid API Key provided",
                            }
                        },
                    )
                else:
                    status, payload = fake.handle(method, split.path, params)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Request-Id", new_id("req"))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self) -> None:
                self._serve("GET")

            def do_POST(self) -> None:
                self._serve("POST")

            def do_DELETE(self) -> None:
                self._serve("DELETE")

        return Handler

    def start(self, port: int = 0) -> None:
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self.handler_class())
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def reset(self) -> None:
        with self.lock:
            for store in (
                self.customers,
                self.products,
                self.prices,
                self.subscriptions,
                self.invoices,
                self.checkout_sessions,
                self.portal_sessions,
            ):
                store.clear()
            self.requests.clear()
            self.subscription_delay = 0.0
            self.invoice_delay = 0.0
            self.fail_with = None

    def calls(self, method: str, path_prefix: str) -> list[Json]:
        return [p for m, path, p in self.requests if m == method and path.startswith(path_prefix)]

    # --- routing -------------------------------------------------------------------------

    def handle(self, method: str, path: str, params: Json) -> tuple[int, Json]:
        with self.lock:
            self.requests.append((method, path, params))
            if self.fail_with is not None:
                return self.fail_with, {"error": {"type": "api_error", "message": "Boom"}}
        if method == "GET" and path.startswith("/v1/subscriptions/") and self.subscription_delay:
            time.sleep(self.subscription_delay)
        if method == "GET" and path.startswith("/v1/invoices/") and self.invoice_delay:
            time.sleep(self.invoice_delay)
        routes: list[tuple[str, str, Callable[..., Json]]] = [
            ("POST", r"/v1/customers", self._create_customer),
            ("GET", r"/v1/customers/(?P<id>[^/]+)", self._get_customer),
            ("POST", r"/v1/customers/(?P<id>[^/]+)", self._update_customer),
            ("DELETE", r"/v1/customers/(?P<id>[^/]+)", self._delete_customer),
            ("GET", r"/v1/subscriptions", self._list_subscriptions),
            ("GET", r"/v1/subscriptions/(?P<id>[^/]+)", self._get_subscription),
            ("POST", r"/v1/subscriptions/(?P<id>[^/]+)", self._update_subscription),
            ("DELETE", r"/v1/subscriptions/(?P<id>[^/]+)", self._cancel_subscription),
            ("GET", r"/v1/invoices/(?P<id>[^/]+)", self._get_invoice),
            ("POST", r"/v1/checkout/sessions", self._create_checkout),
            ("GET", r"/v1/checkout/sessions/(?P<id>[^/]+)", self._get_checkout),
            ("POST", r"/v1/checkout/sessions/(?P<id>[^/]+)/expire", self._expire_checkout),
            ("POST", r"/v1/billing_portal/sessions", self._create_portal),
            ("GET", r"/v1/prices", self._list_prices),
            ("POST", r"/v1/prices", self._create_price),
            ("GET", r"/v1/products/(?P<id>[^/]+)", self._get_product),
            ("POST", r"/v1/products", self._create_product),
        ]
        for verb, pattern, func in routes:
            match = re.fullmatch(pattern, path)
            if verb == method and match:
                try:
                    with self.lock:
                        return 200, func(params, **match.groupdict())
                except StripeApiError as exc:
                    return exc.status, exc.body
        return 404, {
            "error": {
                "type": "invalid_request_error",
                "message": f"Unrecognized request URL ({method}: {path})",
            }
        }

    def _get(self, store: dict[str, Json], kind: str, id: str) -> Json:
        if id not in store:
            raise StripeApiError(404, f"No such {kind}: '{id}'")
        return store[id]

    # --- customers -----------------------------------------------------------------------

    def add_customer(self, email: str | None = None, metadata: Json | None = None) -> Json:
        customer = {
            "id": new_id("cus"),
            "object": "customer",
            "email": email,
            "metadata": metadata or {},
            "created": int(time.time()),
            "livemode": False,
            "invoice_settings": {"default_payment_method": None},
        }
        self.customers[customer["id"]] = customer
        return customer

    def _create_customer(self, params: Json) -> Json:
        return self.add_customer(params.get("email"), params.get("metadata"))

    def _get_customer(self, params: Json, id: str) -> Json:
        customer = self._get(self.customers, "customer", id)
        if customer.get("deleted"):
            return {"id": id, "object": "customer", "deleted": True}
        return customer

    def _update_customer(self, params: Json, id: str) -> Json:
        customer = self._get(self.customers, "customer", id)
        for key in ("email", "name"):
            if key in params:
                customer[key] = params[key]
        customer["metadata"].update(params.get("metadata") or {})
        return customer

    def _delete_customer(self, params: Json, id: str) -> Json:
        self._get(self.customers, "customer", id)["deleted"] = True
        for sub in self.subscriptions.values():
            if sub["customer"] == id and sub["status"] not in FINAL:
                self.cancel(sub["id"])
        return {"id": id, "object": "customer", "deleted": True}

    # --- products and prices -------------------------------------------------------------

    def _create_product(self, params: Json) -> Json:
        product_id = params.get("id") or new_id("prod")
        if product_id in self.products:
            raise StripeApiError(400, "Product already exists.", "resource_already_exists")
        product = {
            "id": product_id,
            "object": "product",
            "name": params["name"],
            "active": True,
            "created": int(time.time()),
            "livemode": False,
        }
        self.products[product_id] = product
        return product

    def _get_product(self, params: Json, id: str) -> Json:
        return self._get(self.products, "product", id)

    def add_price(
        self,
        price_id: str,
        *,
        product: str = "both_sides_daily",
        lookup_key: str | None = None,
        unit_amount: int = 500,
    ) -> Json:
        price = {
            "id": price_id,
            "object": "price",
            "active": True,
            "billing_scheme": "per_unit",
            "currency": "usd",
            "livemode": False,
            "lookup_key": lookup_key,
            "product": product,
            "recurring": {"interval": "month", "interval_count": 1, "usage_type": "licensed"},
            "type": "recurring",
            "unit_amount": unit_amount,
            "created": int(time.time()),
        }
        self.prices[price_id] = price
        return price

    def _create_price(self, params: Json) -> Json:
        self._get(self.products, "product", params["product"])
        key = params.get("lookup_key")
        if key and params.get("transfer_lookup_key") == "true":
            for other in self.prices.values():
                if other["lookup_key"] == key:
                    other["lookup_key"] = None
        price = self.add_price(
            new_id("price"),
            product=params["product"],
            lookup_key=key,
            unit_amount=int(params["unit_amount"]),
        )
        price["recurring"]["interval"] = params["recurring"]["interval"]
        return price

    def _list_prices(self, params: Json) -> Json:
        keys = params.get("lookup_keys") or []
        data = [
            p
            for p in self.prices.values()
            if (not keys or p["lookup_key"] in keys)
            and (params.get("active") != "true" or p["active"])
        ]
        limit = int(params.get("limit") or 10)
        return {
            "object": "list",
            "url": "/v1/prices",
            "has_more": len(data) > limit,
            "data": data[:limit],
        }

    # --- subscriptions and invoices ------------------------------------------------------

    def add_subscription(
        self,
        customer: str,
        price: str,
        *,
        status: str = "active",
        trial_days: int | None = None,
        metadata: Json | None = None,
        period_days: int = 30,
    ) -> Json:
        now = int(time.time())
        trial_end = now + trial_days * 86400 if trial_days else None
        period_end = trial_end or now + period_days * 86400
        price_obj = self.prices.get(price) or self.add_price(price)
        sub_id = new_id("sub")
        sub = {
            "id": sub_id,
            "object": "subscription",
            "customer": customer,
            "status": "trialing" if trial_days else status,
            "items": {
                "object": "list",
                "data": [
                    {
                        "id": new_id("si"),
                        "object": "subscription_item",
                        "price": price_obj,
                        "quantity": 1,
                        "subscription": sub_id,
                        "current_period_start": now,
                        "current_period_end": period_end,
                    }
                ],
                "has_more": False,
                "url": f"/v1/subscription_items?subscription={sub_id}",
            },
            "trial_start": now if trial_days else None,
            "trial_end": trial_end,
            "cancel_at_period_end": False,
            "cancel_at": None,
            "canceled_at": None,
            "ended_at": None,
            "start_date": now,
            "created": now,
            "metadata": metadata or {},
            "latest_invoice": None,
            "livemode": False,
        }
        self.subscriptions[sub_id] = sub
        return sub

    def set(self, sub_id: str, **fields: Any) -> Json:
        with self.lock:
            self.subscriptions[sub_id].update(fields)
            return self.subscriptions[sub_id]

    def cancel(self, sub_id: str) -> Json:
        now = int(time.time())
        return self.set(sub_id, status="canceled", canceled_at=now, ended_at=now)

    def _list_subscriptions(self, params: Json) -> Json:
        data = [
            s
            for s in self.subscriptions.values()
            if params.get("status") == "all" or s["status"] not in FINAL
        ]
        if params.get("starting_after"):
            ids = [s["id"] for s in data]
            data = data[ids.index(params["starting_after"]) + 1 :]
        limit = int(params.get("limit") or 10)
        return {
            "object": "list",
            "url": "/v1/subscriptions",
            "has_more": len(data) > limit,
            "data": data[:limit],
        }

    def _get_subscription(self, params: Json, id: str) -> Json:
        return self._get(self.subscriptions, "subscription", id)

    def _update_subscription(self, params: Json, id: str) -> Json:
        sub = self._get(self.subscriptions, "subscription", id)
        if "cancel_at_period_end" in params:
            sub["cancel_at_period_end"] = params["cancel_at_period_end"] == "true"
        return sub

    def _cancel_subscription(self, params: Json, id: str) -> Json:
        self._get(self.subscriptions, "subscription", id)
        return self.cancel(id)

    def add_invoice(self, sub_id: str, *, status: str = "open", amount: int = 500) -> Json:
        sub = self.subscriptions[sub_id]
        invoice = {
            "id": new_id("in"),
            "object": "invoice",
            "customer": sub["customer"],
            "status": status,
            "amount_due": amount,
            "amount_paid": amount if status == "paid" else 0,
            # Charged once (and, when open, refused): what Stripe shows after an attempt.
            "attempted": status != "draft",
            "attempt_count": 0 if status == "draft" else 1,
            "currency": "usd",
            "hosted_invoice_url": "https://invoice.stripe.test/i/" + secrets.token_hex(6),
            "parent": {
                "type": "subscription_details",
                "subscription_details": {"subscription": sub_id, "metadata": {}},
            },
            "created": int(time.time()),
            "livemode": False,
        }
        self.invoices[invoice["id"]] = invoice
        sub["latest_invoice"] = invoice["id"]
        return invoice

    def _get_invoice(self, params: Json, id: str) -> Json:
        return self._get(self.invoices, "invoice", id)

    # --- checkout and portal -------------------------------------------------------------

    def _create_checkout(self, params: Json) -> Json:
        if params.get("mode") != "subscription":
            raise StripeApiError(400, "mode must be subscription here", "parameter_invalid")
        self._get(self.customers, "customer", params["customer"])
        for item in params["line_items"]:
            self._get(self.prices, "price", item["price"])
        cs_id = "cs_test_" + secrets.token_hex(12)
        checkout = {
            "id": cs_id,
            "object": "checkout.session",
            "mode": "subscription",
            "status": "open",
            "payment_status": "unpaid",
            "customer": params["customer"],
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata") or {},
            "subscription": None,
            "success_url": params["success_url"],
            "cancel_url": params.get("cancel_url"),
            "url": f"https://checkout.stripe.test/c/pay/{cs_id}",
            "created": int(time.time()),
            "expires_at": int(time.time()) + 86400,
            "livemode": False,
            "_params": params,
        }
        self.checkout_sessions[cs_id] = checkout
        return {k: v for k, v in checkout.items() if not k.startswith("_")}

    def _get_checkout(self, params: Json, id: str) -> Json:
        checkout = self._get(self.checkout_sessions, "checkout.session", id)
        return {k: v for k, v in checkout.items() if not k.startswith("_")}

    def _expire_checkout(self, params: Json, id: str) -> Json:
        checkout = self._get(self.checkout_sessions, "checkout.session", id)
        if checkout["status"] != "open":
            raise StripeApiError(400, "Only open sessions can be expired.", "session_expired")
        checkout["status"] = "expired"
        return self._get_checkout({}, id)

    def complete_checkout(self, cs_id: str) -> Json:
        """The reader pays (or starts the trial) on Stripe's page."""
        with self.lock:
            checkout = self.checkout_sessions[cs_id]
            assert checkout["status"] == "open", checkout["status"]
            data = checkout["_params"].get("subscription_data") or {}
            trial = data.get("trial_period_days")
            sub = self.add_subscription(
                checkout["customer"],
                checkout["_params"]["line_items"][0]["price"],
                trial_days=int(trial) if trial else None,
                metadata=data.get("metadata"),
            )
            if not trial:
                self.add_invoice(sub["id"], status="paid")
            checkout.update(status="complete", payment_status="paid", subscription=sub["id"])
            return sub

    def checkout_params(self, cs_id: str) -> Json:
        return self.checkout_sessions[cs_id]["_params"]

    def _create_portal(self, params: Json) -> Json:
        self._get(self.customers, "customer", params["customer"])
        portal = {
            "id": new_id("bps"),
            "object": "billing_portal.session",
            "customer": params["customer"],
            "return_url": params.get("return_url"),
            "url": f"https://billing.stripe.test/p/session/{secrets.token_hex(8)}",
            "created": int(time.time()),
            "livemode": False,
        }
        self.portal_sessions[portal["id"]] = portal
        return portal

    # --- events --------------------------------------------------------------------------

    @staticmethod
    def event(type: str, obj: Json, *, created: int | None = None) -> Json:
        return {
            "id": new_id("evt"),
            "object": "event",
            "api_version": "2026-10-28.endive",
            "created": created or int(time.time()),
            "type": type,
            "data": {"object": json.loads(json.dumps(obj))},
            "livemode": False,
            "pending_webhooks": 1,
            "request": {"id": None, "idempotency_key": None},
        }


def signed(event: Json | str, secret: str, *, timestamp: int | None = None) -> tuple[str, str]:
    """The body and the Stripe-Signature header Stripe would send."""
    payload = event if isinstance(event, str) else json.dumps(event)
    return payload, stripe.WebhookSignature.generate_signature_header(payload, secret, timestamp)


def serve_forever(port: int, state_file: str | None = None) -> None:
    """Run the fake in its own process (bench/webhooks.py), optionally with saved state."""
    fake = FakeStripe()
    if state_file:
        with open(state_file) as f:
            for store, objects in json.load(f).items():
                getattr(fake, store).update(objects)
    fake.start(port)
    print(f"fake stripe listening on {fake.url}", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    import sys

    serve_forever(int(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else None)
