"""A development-only stand-in for Stripe's hosted pages, so `make run` can try the trial.

localstripe plays Stripe's API (customers, plans, subscriptions; it signs and sends the
subscription webhooks itself). It has no Checkout and no customer portal, so this small
server sits in front of it: the app's STRIPE_API_BASE points here, Checkout and portal
sessions are answered here, every other API call is passed on to localstripe. Its two
pages (pay or start the trial; end the trial, cancel) act through localstripe, and a
completed checkout reaches the app as a `checkout.session.completed` webhook signed with
STRIPE_WEBHOOK_SECRET (HMAC-SHA256, as Stripe signs). Every page says TEST MODE; the
command that starts it refuses to run with NEWSLETTER_ENV=production, and so does the
app's configuration check when STRIPE_DEV_STANDIN is set there.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import secrets
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, abort, redirect, render_template, request

log = logging.getLogger(__name__)

Json = dict[str, Any]
# localstripe's plan doubles as the app's STRIPE_PRICE_ID (localstripe has no prices).
PLAN_ID = "price_local_monthly"
TEST_CARD = "4242424242424242"


def unflatten(pairs: list[tuple[str, str]]) -> Json:
    """Stripe's form encoding (`line_items[0][price]=…`) as nested dicts and lists."""
    root: Json = {}
    for key, value in pairs:
        parts = key.replace("]", "").split("[")
        node: Any = root
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value

    def lists(node: Any) -> Any:
        if isinstance(node, dict):
            if node and all(k.isdigit() for k in node):
                return [lists(node[k]) for k in sorted(node, key=int)]
            return {k: lists(v) for k, v in node.items()}
        return node

    result: Json = lists(root)
    return result


def signature_header(payload: str, secret: str, timestamp: int | None = None) -> str:
    """The Stripe-Signature header for `payload`: `t=<unix>,v1=<HMAC-SHA256 of t.payload>`."""
    moment = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{moment}.{payload}".encode(), hashlib.sha256)
    return f"t={moment},v1={mac.hexdigest()}"


@dataclass
class StandIn:
    upstream: str  # localstripe's URL
    public_url: str  # this server as the browser reaches it
    webhook_url: str  # the app's /webhooks/stripe
    webhook_secret: str
    checkouts: dict[str, Json] = field(default_factory=dict)
    portals: dict[str, Json] = field(default_factory=dict)
    trials: dict[str, tuple[int, int]] = field(default_factory=dict)  # sub id -> (start, end)
    lock: threading.Lock = field(default_factory=threading.Lock)

    # --- localstripe -------------------------------------------------------------------

    def call(self, method: str, path: str, params: Json | None = None) -> Json:
        data = _form(params or {}).encode() if params else None
        req = urllib.request.Request(  # noqa: S310 (our own localstripe URL)
            self.upstream + path,
            data=data,
            method=method,
            headers={"Authorization": "Bearer sk_test_local"},
        )
        with urllib.request.urlopen(req, timeout=30) as answer:  # noqa: S310
            result: Json = json.loads(answer.read())
            return result

    def prepare(self) -> None:
        """The product and plan the app sells, and localstripe's webhook to the app."""
        try:
            self.call("GET", f"/v1/plans/{PLAN_ID}")
        except urllib.error.HTTPError:
            product = self.call("POST", "/v1/products", {"name": "Both Sides Daily"})
            self.call(
                "POST",
                "/v1/plans",
                {
                    "id": PLAN_ID,
                    "product": product["id"],
                    "amount": "500",
                    "currency": "usd",
                    "interval": "month",
                },
            )
        body = json.dumps({"url": self.webhook_url, "secret": self.webhook_secret}).encode()
        req = urllib.request.Request(  # noqa: S310
            self.upstream + "/_config/webhooks/app",
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        urllib.request.urlopen(req, timeout=30).close()  # noqa: S310

    def send_webhook(self, kind: str, obj: Json) -> None:
        event = {
            "id": "evt_" + secrets.token_hex(12),
            "object": "event",
            "created": int(time.time()),
            "type": kind,
            "data": {"object": obj},
            "livemode": False,
            "pending_webhooks": 1,
        }
        payload = json.dumps(event)
        req = urllib.request.Request(  # noqa: S310
            self.webhook_url,
            data=payload.encode(),
            method="POST",
            headers={
                "Content-Type": "application/json",
                "Stripe-Signature": signature_header(payload, self.webhook_secret),
            },
        )
        try:
            urllib.request.urlopen(req, timeout=30).close()  # noqa: S310
        except urllib.error.URLError as exc:  # the app retries nothing: say so and go on
            log.warning("webhook %s to %s failed: %s", kind, self.webhook_url, exc)

    # --- Checkout ------------------------------------------------------------------------

    def create_checkout(self, params: Json) -> Json:
        cs_id = "cs_test_" + secrets.token_hex(12)
        checkout = {
            "id": cs_id,
            "object": "checkout.session",
            "mode": "subscription",
            "status": "open",
            "payment_status": "unpaid",
            "customer": params.get("customer"),
            "client_reference_id": params.get("client_reference_id"),
            "metadata": params.get("metadata") or {},
            "subscription": None,
            "success_url": params.get("success_url"),
            "cancel_url": params.get("cancel_url"),
            "url": f"{self.public_url}/checkout/{cs_id}",
            "created": int(time.time()),
            "expires_at": int(time.time()) + 86400,
            "livemode": False,
        }
        with self.lock:
            self.checkouts[cs_id] = {**checkout, "_params": params}
        return checkout

    def public(self, cs_id: str) -> Json:
        with self.lock:
            found = self.checkouts.get(cs_id)
            if found is None:
                raise KeyError(cs_id)
            return {k: v for k, v in found.items() if not k.startswith("_")}

    def complete(self, cs_id: str) -> Json:
        """What Stripe does when the reader submits its page: a card saved, the
        subscription made (with the trial the app asked for), the session completed."""
        with self.lock:
            checkout = self.checkouts[cs_id]
            if checkout["status"] != "open":
                return {k: v for k, v in checkout.items() if not k.startswith("_")}
            params = checkout["_params"]
            customer = checkout["customer"]
            card = self.call(
                "POST",
                "/v1/payment_methods",
                {
                    "type": "card",
                    "card": {
                        "number": TEST_CARD,
                        "exp_month": "12",
                        "exp_year": "2034",
                        "cvc": "123",
                    },
                },
            )
            self.call("POST", f"/v1/payment_methods/{card['id']}/attach", {"customer": customer})
            self.call(
                "POST",
                f"/v1/customers/{customer}",
                {"invoice_settings": {"default_payment_method": card["id"]}},
            )
            data = params.get("subscription_data") or {}
            sub_params: Json = {
                "customer": customer,
                "items": [{"plan": params["line_items"][0]["price"]}],
                "metadata": data.get("metadata") or {},
            }
            sub = self.call("POST", "/v1/subscriptions", sub_params)
            if data.get("trial_period_days"):
                # localstripe has no trial status: the subscription is made paid, and this
                # server shows it as trialing until the trial ends (see `overlay`).
                days = int(data["trial_period_days"])
                self.trials[sub["id"]] = (int(time.time()), int(time.time()) + days * 86400)
            checkout.update(status="complete", payment_status="paid", subscription=sub["id"])
            done = {k: v for k, v in checkout.items() if not k.startswith("_")}
        self.send_webhook("checkout.session.completed", done)
        return done

    def overlay(self, obj: Json) -> Json:
        """A subscription (or a list of them) as Stripe would show it during its trial."""
        if obj.get("object") == "list":
            obj["data"] = [self.overlay(item) for item in obj.get("data", [])]
            return obj
        trial = self.trials.get(str(obj.get("id")))
        running = trial is not None and trial[1] > time.time()
        if obj.get("object") == "subscription" and running and obj.get("status") == "active":
            assert trial is not None
            obj.update(status="trialing", trial_start=trial[0], trial_end=trial[1])
            obj["current_period_end"] = max(int(obj.get("current_period_end") or 0), trial[1])
        return obj

    def end_trial(self, sub_id: str) -> None:
        self.trials.pop(sub_id, None)
        self.notify_updated(sub_id)

    def cancel_at_period_end(self, sub_id: str) -> None:
        # As Stripe's portal does by default: the plan runs to the end of what was paid.
        self.call("POST", f"/v1/subscriptions/{sub_id}", {"cancel_at_period_end": "true"})
        self.notify_updated(sub_id)

    def notify_updated(self, sub_id: str) -> None:
        """Stripe's `customer.subscription.updated`, sent by this server: the trial is its
        own, and localstripe's events for a changed subscription are not to be relied on."""
        sub = self.overlay(self.call("GET", f"/v1/subscriptions/{sub_id}"))
        self.send_webhook("customer.subscription.updated", sub)

    def expire(self, cs_id: str) -> Json:
        with self.lock:
            checkout = self.checkouts[cs_id]
            if checkout["status"] == "open":
                checkout["status"] = "expired"
        return self.public(cs_id)

    # --- portal --------------------------------------------------------------------------

    def create_portal(self, params: Json) -> Json:
        portal_id = "bps_" + secrets.token_hex(12)
        portal = {
            "id": portal_id,
            "object": "billing_portal.session",
            "customer": params.get("customer"),
            "return_url": params.get("return_url"),
            "url": f"{self.public_url}/portal/{portal_id}",
            "created": int(time.time()),
            "livemode": False,
        }
        with self.lock:
            self.portals[portal_id] = portal
        return portal

    def subscriptions_of(self, customer: str) -> list[Json]:
        found = self.call("GET", f"/v1/subscriptions?{urlencode({'customer': customer})}")
        subs = self.overlay(found).get("data", [])
        return [s for s in subs if s.get("status") != "canceled"]


def _form(params: Json, prefix: str = "") -> str:
    pairs: list[tuple[str, str]] = []

    def walk(value: Any, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{key}[{k}]" if key else k)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{key}[{i}]")
        else:
            pairs.append((key, str(value)))

    walk(params, prefix)
    return urlencode(pairs)


def create_standin(standin: StandIn) -> Flask:
    app = Flask(__name__, template_folder="standin_templates")

    def answer(obj: Json, status: int = 200) -> Response:
        return Response(json.dumps(obj), status=status, mimetype="application/json")

    def missing(kind: str, ident: str) -> Response:
        error = {"type": "invalid_request_error", "code": "resource_missing"}
        error["message"] = f"No such {kind}: '{ident}'"
        return answer({"error": error}, 404)

    @app.post("/v1/checkout/sessions")
    def api_create_checkout() -> Response:
        return answer(standin.create_checkout(unflatten(list(request.form.items(multi=True)))))

    @app.get("/v1/checkout/sessions/<cs_id>")
    def api_get_checkout(cs_id: str) -> Response:
        try:
            return answer(standin.public(cs_id))
        except KeyError:
            return missing("checkout.session", cs_id)

    @app.post("/v1/checkout/sessions/<cs_id>/expire")
    def api_expire_checkout(cs_id: str) -> Response:
        try:
            return answer(standin.expire(cs_id))
        except KeyError:
            return missing("checkout.session", cs_id)

    @app.post("/v1/billing_portal/sessions")
    def api_create_portal() -> Response:
        return answer(standin.create_portal(unflatten(list(request.form.items(multi=True)))))

    @app.route("/v1/<path:rest>", methods=["GET", "POST", "DELETE"])
    def passthrough(rest: str) -> Response:
        query = request.query_string.decode()
        url = f"{standin.upstream}/v1/{rest}" + (f"?{query}" if query else "")
        body = request.get_data() if request.method == "POST" else None
        headers = {"Authorization": request.headers.get("Authorization", "")}
        if body is not None:
            headers["Content-Type"] = request.content_type or "application/x-www-form-urlencoded"
        req = urllib.request.Request(url, data=body, method=request.method, headers=headers)  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=60) as upstream:  # noqa: S310
                body = upstream.read()
                if rest.startswith("subscriptions"):
                    body = json.dumps(standin.overlay(json.loads(body))).encode()
                return Response(body, upstream.status, mimetype="application/json")
        except urllib.error.HTTPError as exc:
            return Response(exc.read(), exc.code, mimetype="application/json")

    @app.get("/checkout/<cs_id>")
    def checkout_page(cs_id: str) -> str:
        with standin.lock:
            checkout = standin.checkouts.get(cs_id)
        if checkout is None or checkout["status"] != "open":
            abort(404)
        data = checkout["_params"].get("subscription_data") or {}
        return render_template(
            "checkout.html",
            cs_id=cs_id,
            trial=data.get("trial_period_days"),
            card=TEST_CARD,
            cancel_url=checkout.get("cancel_url"),
        )

    @app.post("/checkout/<cs_id>/complete")
    def checkout_complete(cs_id: str) -> Response:
        if cs_id not in standin.checkouts:
            abort(404)
        done = standin.complete(cs_id)
        target = str(done["success_url"]).replace("{CHECKOUT_SESSION_ID}", cs_id)
        return redirect(target, 303)  # type: ignore[return-value]

    def _portal(portal_id: str) -> Json:
        with standin.lock:
            portal = standin.portals.get(portal_id)
        if portal is None:
            abort(404)
        return portal

    def _own_subscription(portal: Json) -> str:
        sub_id = request.form.get("subscription", "")
        if sub_id not in {s["id"] for s in standin.subscriptions_of(portal["customer"])}:
            abort(404)
        return sub_id

    @app.get("/portal/<portal_id>")
    def portal_page(portal_id: str) -> str:
        portal = _portal(portal_id)
        subs = standin.subscriptions_of(portal["customer"])
        return render_template(
            "portal.html", subs=subs, portal_id=portal_id, return_url=portal["return_url"]
        )

    @app.post("/portal/<portal_id>/end-trial")
    def portal_end_trial(portal_id: str) -> Response:
        sub_id = _own_subscription(_portal(portal_id))
        standin.end_trial(sub_id)
        return redirect(f"/portal/{portal_id}", 303)  # type: ignore[return-value]

    @app.post("/portal/<portal_id>/cancel")
    def portal_cancel(portal_id: str) -> Response:
        sub_id = _own_subscription(_portal(portal_id))
        standin.cancel_at_period_end(sub_id)
        return redirect(f"/portal/{portal_id}", 303)  # type: ignore[return-value]

    return app


def prepare_when_ready(standin: StandIn, timeout: float = 60.0) -> None:
    """localstripe starts beside this server: wait for it, then set it up."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            standin.prepare()
            return
        except (urllib.error.URLError, ConnectionError) as exc:
            if time.monotonic() > deadline:
                raise RuntimeError(f"localstripe at {standin.upstream} did not answer") from exc
            time.sleep(0.5)
