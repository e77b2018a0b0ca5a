"""/metrics: refused without its token, and its counters move by exactly what happened,
scraped from a real gunicorn with several workers (prometheus-client's multiprocess mode)
while a separate CLI process sends an edition."""

from __future__ import annotations

import functools
import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from newsletter import metrics
from tests.billing.fake_stripe import FakeStripe, signed
from tests.conftest import TEST_SECRET
from tests.tracking.conftest import send_edition
from tests.tracking.test_meter import BROWSER_UA

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "metrics-token-0123456789abcdef"
WEBHOOK_SECRET = "whsec_metrics_test"
SCANNER_UA = "Mozilla/5.0 (compatible; Proofpoint URL Defense)"
_get = functools.partial(requests.get, timeout=30)
_post = functools.partial(requests.post, timeout=30)
_VIEW_TOKEN = re.compile(r'data-view-token="([^"]+)"')


@pytest.fixture
def sent_edition(app, session, smtp):  # type: ignore[no-untyped-def]
    return send_edition(app, session, smtp)


@pytest.fixture
def app_settings():  # type: ignore[no-untyped-def]
    return {"METRICS_TOKEN": TOKEN}


def test_metrics_needs_its_bearer_token(client):  # type: ignore[no-untyped-def]
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert client.get("/metrics", headers={"Authorization": TOKEN}).status_code == 401
    ok = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200
    assert ok.headers["Content-Type"].startswith("text/plain")
    assert "newsletter_ledger_queue_depth 0.0" in ok.get_data(as_text=True)


def test_no_token_configured_means_no_endpoint(database_url, tmp_path, smtp):  # type: ignore[no-untyped-def]
    from tests.conftest import make_app

    app = make_app(database_url, tmp_path, smtp)
    try:
        response = app.test_client().get("/metrics", headers={"Authorization": "Bearer x"})
        assert response.status_code == 404
    finally:
        app.extensions["click_log"].close()
        app.extensions["db"].dispose()


def test_label_values_stay_bounded():
    assert metrics.event_type("invoice.paid") == "invoice.paid"
    assert metrics.event_type("x" * 200) == "other"
    assert metrics.event_type("https://evil.example/?a=1") == "other"
    assert metrics.outcome_word("synced: active (stored from a later read)") == "synced"
    assert metrics.outcome_word("ignored: unhandled type") == "ignored"
    assert metrics.reply_class(250) == "2xx" and metrics.reply_class(451) == "4xx"
    assert metrics.reply_class(None) == "error" and metrics.reply_class(999) == "error"


# --- a real gunicorn ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(database_url, tmp_path, smtp) -> Iterator[tuple[str, dict[str, str]]]:  # type: ignore[no-untyped-def]
    port = _free_port()
    multiproc = tmp_path / "metrics"
    multiproc.mkdir()
    env = {
        **os.environ,
        "DATABASE_URL": database_url,
        "SECRET_KEY": TEST_SECRET,
        "BASE_URL": "http://localhost",
        "MAIL_URL": smtp.url,
        "MAIL_FROM": "Both Sides Daily <daily@bothsides.test>",
        "POSTAL_ADDRESS": "1 Test Street, Springfield",
        "NEWSLETTER_INSTANCE": str(tmp_path),
        "OUTBOX_DIR": str(tmp_path / "outbox"),
        "FREE_STORIES_PER_MONTH": "3",
        "RATE_LIMIT_PER_IP": "1000/3600",
        "METRICS_TOKEN": TOKEN,
        "PROMETHEUS_MULTIPROC_DIR": str(multiproc),
        "STRIPE_SECRET_KEY": "sk_test_metrics",
        "STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
        "STRIPE_PRICE_ID": "price_metrics",
        "STRIPE_API_BASE": "http://127.0.0.1:9",  # never called by these events
        "LOG_FORMAT": "json",
        "PYTHONPATH": str(ROOT),
        "WEB_THREADS": "2",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "3",
         "newsletter.app:create_app()"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if _get(f"{base}/healthz", timeout=10).status_code == 200:
                    break
            except requests.RequestException:
                pass
            assert proc.poll() is None and time.monotonic() < deadline, (
                proc.stdout and proc.stdout.read()
            )
            time.sleep(0.2)
        yield base, env
    finally:
        proc.terminate()
        output = proc.communicate(timeout=30)[0]
    # Every line gunicorn and the app wrote is one JSON object (LOG_FORMAT=json).
    for line in output.splitlines():
        if line.strip():
            assert isinstance(json.loads(line), dict), line


def scrape(base: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = _get(f"{base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    values = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            values[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return values


def delta(before, after, name: str, **labels: str) -> float:  # type: ignore[no-untyped-def]
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def test_counters_move_by_exactly_what_happened(served, sent_edition, tmp_path):  # type: ignore[no-untyped-def]
    base, env = served
    assert _get(f"{base}/metrics").status_code == 401
    before = scrape(base)

    # 12 clicks by people (new connections, so spread over the workers), 3 by a scanner.
    links = [link.split("localhost", 1)[1] for link in sent_edition.links["ann@example.com"]]
    pages = []
    for n in range(12):
        browser = requests.Session()
        redirect = browser.get(
            f"{base}{links[n % len(links)]}",
            headers={"User-Agent": BROWSER_UA},
            allow_redirects=False,
        )
        assert redirect.status_code == 302
        if n < 4:
            page = browser.get(
                f"{base}{redirect.headers['Location']}", headers={"User-Agent": BROWSER_UA}
            )
            pages.append((browser, redirect.headers["Location"], page.text))
    for n in range(3):
        scanned = _get(
            f"{base}{links[n]}", headers={"User-Agent": SCANNER_UA}, allow_redirects=False
        )
        assert scanned.status_code == 302
    # Four stories opened while 3 free stories were left: 3 charged, then over the limit.
    outcomes = []
    for browser, path, html in pages:
        token = _VIEW_TOKEN.search(html).group(1)  # type: ignore[union-attr]
        answer = browser.post(
            f"{base}{path}/read", json={"token": token}, headers={"User-Agent": BROWSER_UA}
        )
        outcomes.append(answer.status_code)
    assert outcomes == [200, 200, 200, 402]
    assert _post(f"{base}{pages[0][1]}/read", json={"token": "forged"}).status_code == 400

    # Webhooks: one handled, its redelivery, and one with a bad signature.
    event = FakeStripe.event("product.created", {"id": "prod_metrics", "object": "product"})
    body, header = signed(event, WEBHOOK_SECRET)
    for _ in range(2):
        answer = _post(f"{base}/webhooks/stripe", data=body,
                               headers={"Stripe-Signature": header, "Content-Type": "application/json"})  # fmt: skip
        assert answer.status_code == 200
    forged = _post(f"{base}/webhooks/stripe", data=body,
                           headers={"Stripe-Signature": signed(event, "whsec_other")[1]})  # fmt: skip
    assert forged.status_code == 400

    # A send from another process (the CLI) into the same metrics directory.
    sent = subprocess.run(
        [sys.executable, "-m", "newsletter", "edition", "send", "--now",
         "--date", sent_edition.edition.date.isoformat()],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert sent.returncode == 0, sent.stdout + sent.stderr

    after = scrape(base)
    assert delta(before, after, "newsletter_tracked_clicks_total", visitor="human") == 12
    assert delta(before, after, "newsletter_tracked_clicks_total", visitor="bot") == 3
    reads = "newsletter_read_confirmations_total"
    assert delta(before, after, reads, visitor="human", outcome="charged") == 3
    assert delta(before, after, reads, visitor="human", outcome="over_limit") == 1
    assert delta(before, after, reads, visitor="unknown", outcome="invalid") == 1
    hooks = "newsletter_webhook_events_total"
    assert (
        delta(before, after, hooks, provider="stripe", type="product.created", outcome="ignored")
        == 1
    )
    assert (
        delta(before, after, hooks, provider="stripe", type="product.created", outcome="duplicate")
        == 1
    )
    assert (
        delta(
            before, after, "newsletter_webhook_refused_total", provider="stripe", reason="signature"
        )
        == 1
    )
    assert delta(before, after, "newsletter_deliveries_total", outcome="sent") == 2
    assert delta(before, after, "newsletter_smtp_replies_total", reply_class="2xx") == 2
    day = sent_edition.edition.date.isoformat()
    assert after[("newsletter_edition_deliveries", (("edition", day), ("state", "sent")))] == 2
    assert after[("newsletter_ledger_queue_depth", ())] == 0
    requests_total = "newsletter_http_requests_total"
    assert (
        delta(
            before,
            after,
            requests_total,
            endpoint="tracking.tracked_link",
            method="GET",
            status="302",
        )
        == 15
    )
    # Confirmations answered before Flask count under their view's name too.
    confirmed = delta(before, after, requests_total, endpoint="tracking.confirm_read", method="POST", status="200")  # fmt: skip
    assert confirmed == 3
    # The counts came from more than one worker: each wrote its own file.
    pids = {
        name.rsplit("_", 1)[1]
        for name in os.listdir(env["PROMETHEUS_MULTIPROC_DIR"])
        if name.startswith("counter_")
    }
    assert len(pids) >= 3  # at least two web workers and the CLI


def test_the_sample_dashboard_only_asks_for_metrics_that_exist():
    from prometheus_client import REGISTRY

    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exported = {f"{metric.name}{suffix}" for metric in REGISTRY.collect()
                for suffix in ("", "_total", "_bucket", "_count", "_sum")}  # fmt: skip
    exported |= {"newsletter_ledger_queue_depth", "newsletter_edition_deliveries"}  # at scrape
    asked = {name for panel in dashboard["panels"] for target in panel["targets"]
             for name in re.findall(r"\bnewsletter_[a-z_]+", target["expr"])}  # fmt: skip
    assert asked and asked <= exported, asked - exported
