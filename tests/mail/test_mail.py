"""Email that real servers accept: structure, headers, line lengths, transports and errors."""

from __future__ import annotations

import socket
import threading
from email import policy
from email.parser import BytesParser

import pytest

from newsletter.mail.message import Hole, compose, fill_body, now_header, qp_encode
from newsletter.mail.render import render_email
from newsletter.mail.sending import deliver_now, open_transport, send_bytes
from newsletter.mail.transports import (
    OutboxTransport,
    PermanentDeliveryError,
    SmtpTransport,
    TemporaryDeliveryError,
    transport_from_url,
)
from tests.smtp_server import free_port

SAMPLE_CONTEXT = {
    "confirm": {"confirm_url": "http://localhost/confirm/abc", "valid_hours": 72},
    "signin": {
        "signin_url": "http://localhost/signin/abc",
        "valid_minutes": 30,
        "reason": "signin",
    },
}
EMAIL_NAMES = sorted(SAMPLE_CONTEXT)


def check_wire_format(data: bytes) -> None:
    """What a strict receiving server checks: CRLF lines within RFC 5321's 998 octets."""
    lines = data.split(b"\r\n")
    assert all(len(line) <= 998 for line in lines), max(len(line) for line in lines)
    assert b"\n" not in data.replace(b"\r\n", b""), "bare LF in message"


class TestEveryEmailThroughARealServer:
    @pytest.mark.parametrize("name", EMAIL_NAMES)
    @pytest.mark.parametrize("list_mail", [False, True])
    def test_accepted_with_the_required_structure(self, app, smtp, name, list_mail):
        unsubscribe = "http://localhost/unsubscribe/tok" if list_mail else None
        deliver_now(
            app, name, "reader@example.com", SAMPLE_CONTEXT[name], unsubscribe_url=unsubscribe
        )
        [received] = smtp.received
        check_wire_format(received.data)
        assert received.mail_from == "daily@bothsides.test"
        msg = received.message
        assert msg.get_content_type() == "multipart/alternative"
        assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
        assert msg["From"] == "Both Sides Daily <daily@bothsides.test>"
        assert msg["To"] == "reader@example.com"
        assert msg["Message-ID"].startswith("<") and msg["Message-ID"].endswith("@bothsides.test>")
        assert msg["Date"]
        html = msg.get_body(("html",)).get_content()
        text = msg.get_body(("plain",)).get_content()
        assert "1 Test Street, Springfield" in html and "1 Test Street, Springfield" in text
        if list_mail:
            assert msg["List-Unsubscribe"] == "<http://localhost/unsubscribe/tok>"
            assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
            assert msg["List-Id"] == "Both Sides Daily <daily.both-sides.localhost>"
            assert 'href="http://localhost/unsubscribe/tok"' in html
            assert "http://localhost/unsubscribe/tok" in text
        else:
            assert msg["List-Unsubscribe"] is None

    @pytest.mark.parametrize("name", EMAIL_NAMES)
    def test_css_is_inlined_and_html_is_small(self, app, name):
        with app.app_context():
            rendered = render_email(
                name,
                {
                    "base_url": "http://x",
                    "postal_address": "",
                    "product_name": "B",
                    "unsubscribe_url": None,
                    **SAMPLE_CONTEXT[name],
                },
            )
        assert 'style="' in rendered.html
        assert "<mj-" not in rendered.html
        assert len(rendered.html.encode()) < 102 * 1024

    def test_a_message_with_an_overlong_line_is_refused_by_the_real_server(self, smtp):
        # The guard the suite relies on: the test server refuses what real servers refuse.
        body = b"Subject: x\r\nFrom: a@b.test\r\nTo: c@d.test\r\n\r\n" + b"x" * 1200 + b"\r\n"
        transport = SmtpTransport(smtp.url, timeout=5)
        with pytest.raises(PermanentDeliveryError) as caught:
            transport.send_bytes("a@b.test", "c@d.test", body)
        transport.close()
        assert caught.value.code == 500
        assert "too long" in caught.value.reply.lower()

    def test_long_unbroken_html_is_still_within_line_limits(self):
        html = "<p>" + "word" * 2000 + "</p>"
        template = compose(
            mail_from="A <a@b.test>",
            subject="s",
            text="é" * 3000,
            html=html,
            list_id="L <l.b.test>",
        )
        data = template.render(
            {
                "to": "c@d.test",
                "date": now_header(),
                "message_id": "<1@b.test>",
                "unsubscribe_url": "http://x/unsubscribe/" + "t" * 400,
            }
        )
        check_wire_format(data)
        parsed = BytesParser(policy=policy.default).parsebytes(data)
        assert parsed.get_body(("html",)).get_content().rstrip() == html
        assert parsed.get_body(("plain",)).get_content().rstrip() == "é" * 3000


class TestSendBytes:
    """The one way a composed message leaves: from MAIL_FROM's address, over a connection
    of its own or one the caller reuses."""

    def test_on_its_own_connection(self, app, smtp):
        send_bytes(app, "reader@example.com", b"Subject: x\r\n\r\nhi\r\n")
        [received] = smtp.received
        assert (received.mail_from, received.rcpt_tos) == (
            "daily@bothsides.test",
            ["reader@example.com"],
        )

    def test_over_a_reused_connection(self, app, smtp):
        transport = open_transport(app)
        try:
            for n in range(3):
                send_bytes(
                    app, f"r{n}@example.com", b"Subject: x\r\n\r\nhi\r\n", transport=transport
                )
        finally:
            transport.close()
        assert [r.rcpt_tos for r in smtp.received] == [[f"r{n}@example.com"] for n in range(3)]
        assert {r.mail_from for r in smtp.received} == {"daily@bothsides.test"}

    def test_a_refusal_is_raised(self, app, smtp):
        smtp.handler.rcpt_refusals["gone@example.com"] = "550 5.1.1 No such user"
        with pytest.raises(PermanentDeliveryError):
            send_bytes(app, "gone@example.com", b"Subject: x\r\n\r\nhi\r\n")


class TestSmtpErrors:
    def test_4xx_is_temporary_and_carries_the_reply(self, smtp):
        smtp.handler.data_replies.append("451 4.3.0 Try again later")
        transport = SmtpTransport(smtp.url, timeout=5)
        with pytest.raises(TemporaryDeliveryError) as caught:
            transport.send_bytes("a@b.test", "c@d.test", b"Subject: x\r\n\r\nhi\r\n")
        assert caught.value.code == 451
        assert "Try again later" in caught.value.reply
        # The connection stays usable: the next message goes through on it.
        transport.send_bytes("a@b.test", "c@d.test", b"Subject: y\r\n\r\nhi\r\n")
        transport.close()
        assert len(smtp.received) == 1

    def test_5xx_recipient_refusal_is_permanent(self, smtp):
        smtp.handler.rcpt_refusals["gone@example.com"] = "550 5.1.1 No such user"
        transport = SmtpTransport(smtp.url, timeout=5)
        with pytest.raises(PermanentDeliveryError) as caught:
            transport.send_bytes("a@b.test", "gone@example.com", b"Subject: x\r\n\r\nhi\r\n")
        assert caught.value.code == 550
        assert "No such user" in caught.value.reply
        transport.close()

    def test_connection_refused_is_temporary(self):
        transport = SmtpTransport(f"smtp://127.0.0.1:{free_port()}", timeout=2)
        with pytest.raises(TemporaryDeliveryError):
            transport.send_bytes("a@b.test", "c@d.test", b"Subject: x\r\n\r\nhi\r\n")

    def test_a_server_that_never_answers_times_out_as_temporary(self):
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        accepted: list[socket.socket] = []
        thread = threading.Thread(target=lambda: accepted.append(listener.accept()[0]), daemon=True)
        thread.start()
        transport = SmtpTransport(f"smtp://127.0.0.1:{listener.getsockname()[1]}", timeout=1)
        with pytest.raises(TemporaryDeliveryError):
            transport.send_bytes("a@b.test", "c@d.test", b"Subject: x\r\n\r\nhi\r\n")
        for s in accepted:
            s.close()
        listener.close()

    def test_connection_is_reused_across_messages(self, smtp):
        transport = SmtpTransport(smtp.url, timeout=5)
        for n in range(3):
            transport.send_bytes("a@b.test", "c@d.test", f"Subject: {n}\r\n\r\nhi\r\n".encode())
        peers = {id(transport._conn)}
        transport.close()
        assert len(smtp.received) == 3
        assert len(peers) == 1


class TestTransportsFromUrl:
    @pytest.mark.parametrize(
        ("url", "scheme", "host", "port", "user"),
        [
            ("smtp://mail.example.com", "smtp", "mail.example.com", 25, None),
            (
                "smtp+starttls://u%40x:p%3Aw@relay.test:2525",
                "smtp+starttls",
                "relay.test",
                2525,
                "u@x",
            ),
            ("smtps://key:secret@smtp.test", "smtps", "smtp.test", 465, "key"),
        ],
    )
    def test_smtp_urls(self, tmp_path, url, scheme, host, port, user):
        transport = transport_from_url(url, outbox_dir=tmp_path)
        assert isinstance(transport, SmtpTransport)
        assert (transport.scheme, transport.host, transport.port, transport.username) == (
            scheme,
            host,
            port,
            user,
        )

    def test_bad_url_is_a_clear_config_error(self, tmp_path):
        from newsletter.errors import ConfigError

        with pytest.raises(ConfigError, match="not supported"):
            transport_from_url("http://mail.example.com", outbox_dir=tmp_path)

    def test_outbox_writes_eml_files(self, tmp_path):
        transport = transport_from_url("outbox:", outbox_dir=tmp_path / "outbox")
        assert isinstance(transport, OutboxTransport)
        transport.send_bytes("a@b.test", "c@d.test", b"Subject: hi\r\n\r\nbody\r\n")
        [path] = (tmp_path / "outbox").glob("*.eml")
        assert path.read_bytes().startswith(b"Subject: hi")


class TestDevOutbox:
    @pytest.fixture
    def app_settings(self):
        return {"MAIL_URL": "outbox:"}

    def test_signup_email_is_listed_and_viewable(self, client):
        from tests.conftest import csrf_token

        client.post("/signup", data={"email": "ann@example.com", "csrf_token": csrf_token(client)})
        listing = client.get("/dev/outbox").get_data(as_text=True)
        assert "Confirm your Both Sides Daily subscription" in listing
        name = listing.split('href="/dev/outbox/')[1].split('"')[0]
        page = client.get(f"/dev/outbox/{name}").get_data(as_text=True)
        assert "/confirm/" in page
        html = client.get(f"/dev/outbox/{name}/html")
        assert "Confirm my subscription" in html.get_data(as_text=True)
        assert "sandbox" in html.headers["Content-Security-Policy"]

    def test_path_tricks_are_404(self, client):
        for name in ("..%2F..%2Fetc%2Fpasswd", "../secret_key", "x.eml"):
            assert client.get(f"/dev/outbox/{name}").status_code == 404


def test_outbox_is_not_served_in_production(database_url, tmp_path, smtp):
    from tests.conftest import make_app

    app = make_app(database_url, tmp_path, smtp, ENV="production")
    assert app.test_client().get("/dev/outbox").status_code == 404


class TestMessageTemplates:
    def test_holes_are_filled_per_recipient_and_decode_exactly(self):
        html = [
            '<p>Hello</p><a href="',
            Hole("link_1"),
            '">Read</a> ' + "x" * 300,
            Hole("count"),
            " left",
        ]
        text = [
            "Read: ",
            Hole("link_1"),
            "\nYou have ",
            Hole("count"),
            " free stories left. Ünïcode",
        ]
        template = compose(
            mail_from="Both Sides Daily <daily@b.test>",
            subject="Top: ä; b; c",
            text=text,
            html=html,
            list_id="L <l.b.test>",
        )
        values = {
            "to": "ann@example.com",
            "date": now_header(),
            "message_id": "<m1@b.test>",
            "unsubscribe_url": "http://x/u/abc",
            "link_1": "http://x/r/AbC_-123",
            "count": "7",
        }
        data = template.render(values)
        check_wire_format(data)
        msg = BytesParser(policy=policy.default).parsebytes(data)
        assert msg["To"] == "ann@example.com"
        assert msg["Subject"] == "Top: ä; b; c"
        assert msg["Message-ID"] == "<m1@b.test>"
        assert msg["List-Unsubscribe"] == "<http://x/u/abc>"
        # MIME's canonical line end is CRLF; the decoded text keeps it.
        plain = msg.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip()
        assert plain == "Read: http://x/r/AbC_-123\nYou have 7 free stories left. Ünïcode"
        assert msg.get_body(("html",)).get_content().rstrip() == fill_body(html, values)

    def test_values_needing_encoding_still_decode(self):
        template = compose(
            mail_from="a@b.test",
            subject="s",
            text=["[", Hole("v"), "]"],
            html=["<p>", Hole("v"), "</p>"],
        )
        odd = "a=b é " + "long" * 40 + " "
        data = template.render(
            {"to": "c@d.test", "date": now_header(), "message_id": "<1@b>", "v": odd}
        )
        check_wire_format(data)
        msg = BytesParser(policy=policy.default).parsebytes(data)
        assert msg.get_body(("plain",)).get_content().rstrip("\r\n") == f"[{odd}]"

    def test_qp_lines_never_exceed_76(self):
        encoded = qp_encode(("é" * 100 + " \t") * 5 + "\n" + "=" * 200)
        assert max(len(line) for line in encoded.split("\r\n")) <= 76
        import quopri

        assert (
            quopri.decodestring(encoded.encode()).decode().replace("\r\n", "\n")
            == ("é" * 100 + " \t") * 5 + "\n" + "=" * 200
        )


def test_lines_starting_with_a_dot_arrive_intact(smtp):
    text = ".hidden line\n..two dots\n.\nend"
    template = compose(mail_from="a@b.test", subject="dots", text=text, html="<p>.x</p>")
    data = template.render({"to": "c@d.test", "date": now_header(), "message_id": "<d@b.test>"})
    transport = SmtpTransport(smtp.url, timeout=5)
    transport.send_bytes("a@b.test", "c@d.test", data)
    transport.close()
    [received] = smtp.received
    msg = BytesParser(policy=policy.default).parsebytes(received.data)
    assert msg.get_body(("plain",)).get_content().replace("\r\n", "\n").rstrip() == text
