"""The gateway's GETs: one kept-alive connection per thread, and stripe-python for
anything but a 200 (its retries and typed errors)."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator

import pytest
import stripe

from newsletter.billing.gateway import StripeGateway
from tests.billing.fake_stripe import FakeStripe


class DroppingServer:
    """An HTTP/1.1 server on loopback that answers one request per connection and then
    closes it without saying so, as a server ending idle keep-alive connections does."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.requests: list[dict[str, str]] = []
        threading.Thread(target=self._serve, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.sock.getsockname()[1]}"

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                raw = b""
                while b"\r\n\r\n" not in raw:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    raw += chunk
                if not raw:
                    continue
                line, *headers = raw.split(b"\r\n\r\n")[0].decode().split("\r\n")
                request = {"line": line}
                request.update(h.split(": ", 1) for h in headers)  # type: ignore[misc]
                self.requests.append(request)
                body = json.dumps({"id": line.split()[1].rsplit("/", 1)[1], "object": "x"})
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
                )

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def dropping_server() -> Iterator[DroppingServer]:
    server = DroppingServer()
    yield server
    server.close()


def test_a_get_sends_the_key_and_stripe_s_api_version(dropping_server) -> None:  # type: ignore[no-untyped-def]
    gw = StripeGateway("sk_test_gateway", api_base=dropping_server.url)
    assert gw.retrieve_subscription("sub_1") == {"id": "sub_1", "object": "x"}
    [request] = dropping_server.requests
    assert request["line"] == "GET /v1/subscriptions/sub_1 HTTP/1.1"
    assert request["Authorization"] == "Bearer sk_test_gateway"
    assert request["Stripe-Version"] == stripe.api_version


def test_a_connection_the_server_dropped_is_replaced(dropping_server) -> None:  # type: ignore[no-untyped-def]
    gw = StripeGateway("sk_test_gateway", api_base=dropping_server.url)
    answers = [gw.retrieve_subscription(f"sub_{n}") for n in range(3)]
    assert [a["id"] for a in answers] == ["sub_0", "sub_1", "sub_2"]


def test_an_error_is_stripe_python_s_typed_error(fake_stripe: FakeStripe) -> None:
    gw = StripeGateway("sk_test_fake", api_base=fake_stripe.url, max_network_retries=0)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        gw.retrieve_subscription("sub_missing")
    assert caught.value.http_status == 404
    fake_stripe.fail_with = 500
    with pytest.raises(stripe.APIError):
        gw.retrieve_invoice("in_any")
