"""SMTP with STARTTLS, implicit TLS and AUTH, against real aiosmtpd servers."""

from __future__ import annotations

import ssl

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from newsletter.mail.transports import PermanentDeliveryError, SmtpTransport
from tests.smtp_server import Handler, free_port

MESSAGE = b"Subject: hello\r\nFrom: a@b.test\r\nTo: c@d.test\r\n\r\nhi\r\n"


def authenticator(server, session, envelope, mechanism, auth_data):  # type: ignore[no-untyped-def]
    def raw(value: str | bytes) -> bytes:
        return value if isinstance(value, bytes) else value.encode()

    ok = isinstance(auth_data, LoginPassword) and (
        raw(auth_data.login),
        raw(auth_data.password),
    ) == (b"relay-user", b"p@ss:word")
    return AuthResult(success=ok, handled=False)


@pytest.fixture(scope="module")
def ca(tmp_path_factory):  # type: ignore[no-untyped-def]
    authority = trustme.CA()
    cert = authority.issue_cert("localhost")
    ca_file = tmp_path_factory.mktemp("ca") / "ca.pem"
    authority.cert_pem.write_to_path(str(ca_file))
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    return ca_file, server_ctx


@pytest.fixture
def trust_test_ca(ca, monkeypatch):  # type: ignore[no-untyped-def]
    # The transport verifies certificates with the system store; point it at the test CA.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca[0]))


def test_starttls_with_auth(ca, trust_test_ca):
    handler = Handler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=ca[1],
        require_starttls=True,
        authenticator=authenticator,
        auth_required=True,
        server_hostname="localhost",
    )
    controller.start()
    try:
        transport = SmtpTransport(
            f"smtp+starttls://relay-user:p%40ss%3Aword@localhost:{port}", timeout=5
        )
        transport.send_bytes("a@b.test", "c@d.test", MESSAGE)
        transport.close()
        with pytest.raises(PermanentDeliveryError, match="login refused"):
            SmtpTransport(
                f"smtp+starttls://relay-user:wrong@localhost:{port}", timeout=5
            ).send_bytes("a@b.test", "c@d.test", MESSAGE)
    finally:
        controller.stop()
    assert len(handler.received) == 1


def test_implicit_tls(ca, trust_test_ca):
    handler = Handler()
    port = free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, ssl_context=ca[1], server_hostname="localhost"
    )
    controller.start()
    try:
        transport = SmtpTransport(f"smtps://localhost:{port}", timeout=5)
        transport.send_bytes("a@b.test", "c@d.test", MESSAGE)
        transport.close()
    finally:
        controller.stop()
    assert len(handler.received) == 1


def test_untrusted_certificate_is_refused(ca):
    port = free_port()
    controller = Controller(
        Handler(), hostname="127.0.0.1", port=port, ssl_context=ca[1], server_hostname="localhost"
    )
    controller.start()
    try:
        from newsletter.mail.transports import TemporaryDeliveryError

        with pytest.raises(TemporaryDeliveryError, match="certificate"):
            SmtpTransport(f"smtps://localhost:{port}", timeout=5).send_bytes(
                "a@b.test", "c@d.test", MESSAGE
            )
    finally:
        controller.stop()
