"""Billing fixtures: the fake Stripe API, localstripe, signed webhook posts, readers."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.auth.session import session_values
from newsletter.billing.gateway import PRICE_LOOKUP_KEY
from newsletter.billing.models import BillingSubscription, StripeEvent
from newsletter.readers.models import Reader, ReaderStatus
from tests.billing.fake_stripe import FakeStripe, signed
from tests.conftest import require
from tests.smtp_server import free_port

PRICE_ID = "price_test_bsd_monthly"
SECRET = "whsec_test_current_secret"
OLD_SECRET = "whsec_test_previous_secret"


@pytest.fixture(scope="session")
def _fake_stripe_server() -> Iterator[FakeStripe]:
    fake = FakeStripe()
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture
def fake_stripe(_fake_stripe_server: FakeStripe) -> FakeStripe:
    _fake_stripe_server.reset()
    _fake_stripe_server.add_price(PRICE_ID, lookup_key=PRICE_LOOKUP_KEY)
    return _fake_stripe_server


@pytest.fixture
def stripe_settings(fake_stripe: FakeStripe) -> dict[str, Any]:
    return {
        "STRIPE_SECRET_KEY": "sk_test_fake",
        "STRIPE_API_BASE": fake_stripe.url,
        "STRIPE_PRICE_ID": PRICE_ID,
        "STRIPE_WEBHOOK_SECRET": SECRET,
    }


@pytest.fixture
def app_settings(stripe_settings: dict[str, Any]) -> dict[str, Any]:
    return stripe_settings


def post_event(
    client: FlaskClient,
    event: dict[str, Any],
    *,
    secret: str = SECRET,
    timestamp: int | None = None,
) -> Any:
    payload, header = signed(event, secret, timestamp=timestamp)
    return client.post(
        "/webhooks/stripe",
        data=payload,
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )


def make_reader(session: Session, email: str, **fields: Any) -> Reader:
    reader = Reader(email=email, email_key=email.lower(), status=ReaderStatus.CONFIRMED, **fields)
    session.add(reader)
    session.commit()
    return reader


def subscription_row(session: Session, sub_id: str) -> BillingSubscription | None:
    session.rollback()  # see what the app committed since
    return session.scalar(
        select(BillingSubscription).where(BillingSubscription.stripe_subscription_id == sub_id)
    )


def event_rows(session: Session) -> list[StripeEvent]:
    session.rollback()
    return list(session.scalars(select(StripeEvent)))


def wait_until(check: Callable[[], Any], timeout: float = 15.0, interval: float = 0.1) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(interval)


# --- localstripe -------------------------------------------------------------------------


class LocalStripe:
    def __init__(self, port: int, process: subprocess.Popen[bytes]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process = process

    def register_webhook(self, name: str, url: str, secret: str) -> None:
        response = requests.post(
            f"{self.url}/_config/webhooks/{name}", json={"url": url, "secret": secret}, timeout=5
        )
        assert response.status_code == 200, response.text


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStripe]:
    executable = shutil.which("localstripe") or str(
        Path(__file__).resolve().parents[2] / ".venv" / "bin" / "localstripe"
    )
    require(Path(executable).exists(), "localstripe is not installed (pip install localstripe)")
    port = free_port()
    log = (tmp_path_factory.mktemp("localstripe") / "localstripe.log").open("wb")
    process = subprocess.Popen(
        [executable, "--port", str(port), "--from-scratch"], stdout=log, stderr=log
    )
    deadline = time.monotonic() + 20
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError("localstripe did not start") from None
            time.sleep(0.1)
    yield LocalStripe(port, process)
    process.terminate()
    process.wait(10)
    log.close()


def signed_in(client: FlaskClient, session: Session, email: str, **fields: Any) -> Reader:
    """A confirmed reader, signed in on `client` (sign-in itself is tested in tests/auth)."""
    reader = make_reader(session, email, **fields)
    with client.session_transaction() as cookie:
        cookie.update(session_values(reader))
        cookie.permanent = True
    return reader
