"""A real HTTP server on loopback serving feeds (and the ways feeds go wrong), written
here; and outlets with feeds to fetch from it."""

from __future__ import annotations

import gzip
import threading
import time
from collections.abc import Callable, Iterator
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from flask import Flask

from newsletter.feeds.models import Feed
from newsletter.stories.models import Bias, Factuality, Outlet

Handler = Callable[[BaseHTTPRequestHandler], None]

RSS2 = """<?xml version="1.0" encoding="UTF-8"?>
<rss version="2.0"><channel>
<title>Harbor Gazette</title><link>https://gazette.example/</link><description>News</description>
<item>
  <title>Council approves &lt;b&gt;new&lt;/b&gt; harbor budget &amp;amp; tax plan</title>
  <link>https://gazette.example/news/harbor-budget?utm_source=rss&amp;id=7</link>
  <guid isPermaLink="false">gazette-7</guid>
  <description><![CDATA[<p>The city council <b>approved</b> the harbor budget on Monday.</p>
  <script>alert(1)</script>   <img src="x.png"> Taxes rise&nbsp;2%.]]></description>
  <pubDate>Mon, 09 Mar 2026 14:30:00 +0100</pubDate>
</item>
<item>
  <title>Ferry strike ends after three days</title>
  <link>https://gazette.example/news/ferry-strike</link>
  <guid>https://gazette.example/news/ferry-strike</guid>
  <description>Ferries run again from Tuesday.</description>
  <pubDate>Mon, 09 Mar 2026 09:00:00 GMT</pubDate>
</item>
</channel></rss>"""

RSS1 = """<?xml version="1.0" encoding="UTF-8"?>
<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"
  xmlns="http://purl.org/rss/1.0/" xmlns:dc="http://purl.org/dc/elements/1.1/">
<channel rdf:about="https://rdf.example/"><title>RDF Times</title><link>https://rdf.example/</link>
<description>d</description></channel>
<item rdf:about="https://rdf.example/a/lighthouse">
  <title>Lighthouse restored after storm damage</title>
  <link>https://rdf.example/a/lighthouse</link>
  <description>The old lighthouse shines again.</description>
  <dc:date>2026-03-09T07:15:00Z</dc:date>
</item>
</rdf:RDF>"""

ATOM = """<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
<title>Atom Post</title><id>urn:atom-post</id><updated>2026-03-09T10:00:00Z</updated>
<entry>
  <title type="html">Mayor&#8217;s plan for &lt;em&gt;bike lanes&lt;/em&gt;</title>
  <link rel="alternate" href="/stories/bike-lanes"/>
  <id>tag:atom.example,2026:bike-lanes</id>
  <updated>2026-03-09T10:00:00Z</updated>
  <published>2026-03-09T08:00:00-05:00</published>
  <summary type="html">&lt;p&gt;Twelve   new lanes,
  city-wide.&lt;/p&gt;</summary>
</entry>
</feed>"""

# Declares ISO-8859-1 but is UTF-8 ("Zürich", "café" in UTF-8 bytes).
BAD_ENCODING = """<?xml version="1.0" encoding="ISO-8859-1"?>
<rss version="2.0"><channel><title>Enc</title><link>https://enc.example/</link>
<description>d</description>
<item><title>Zürich café reopens</title><link>https://enc.example/zurich-cafe</link>
<guid>enc-1</guid></item>
</channel></rss>""".encode()

MALFORMED = b"""<?xml version="1.0"?>\n<rss version="2.0"><channel><title>Broken</title>
<item><title>Half an item</title><descr"""

HTML_PAGE = b"""<!DOCTYPE html><html><head><title>Welcome</title></head>
<body><h1>Our news site</h1><p>Subscribe to our newsletter!</p></body></html>"""


def rss_with(items: list[tuple[str, str, str]]) -> str:
    """An RSS 2.0 document of (guid, link, title) items."""
    body = "".join(
        f"<item><title>{title}</title><link>{link}</link><guid>{guid}</guid>"
        f"<pubDate>Mon, 09 Mar 2026 09:00:00 GMT</pubDate></item>"
        for guid, link, title in items
    )
    return (
        '<?xml version="1.0"?><rss version="2.0"><channel><title>t</title>'
        f"<link>https://x.example/</link><description>d</description>{body}</channel></rss>"
    )


class FeedServer:
    """`routes[path]` is a function writing the whole answer to the request handler;
    `hits[path]` counts requests, `headers[path]` keeps the last request's headers."""

    def __init__(self) -> None:
        self.routes: dict[str, Handler] = {}
        self.hits: dict[str, int] = {}
        self.headers: dict[str, Any] = {}
        server = self

        class _Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                path = self.path.split("?", 1)[0]
                server.hits[path] = server.hits.get(path, 0) + 1
                server.headers[path] = self.headers
                route = server.routes.get(path)
                try:
                    if route is None:
                        send(self, 404, b"not found", "text/plain")
                    else:
                        route(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client stopped reading (size cap, timeout): expected

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._httpd.daemon_threads = True
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, body: str | bytes, content_type: str = "application/rss+xml") -> str:
        data = body.encode() if isinstance(body, str) else body
        self.routes[path] = lambda h: send(h, 200, data, content_type)
        return self.url(path)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


def send(
    h: BaseHTTPRequestHandler,
    status: int,
    body: bytes,
    content_type: str,
    headers: dict[str, str] | None = None,
) -> None:
    h.send_response(status)
    h.send_header("Content-Type", content_type)
    h.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        h.send_header(name, value)
    h.end_headers()
    h.wfile.write(body)


@pytest.fixture(scope="session")
def _feed_server() -> Iterator[FeedServer]:
    server = FeedServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def feed_server(_feed_server: FeedServer) -> FeedServer:
    _feed_server.routes.clear()
    _feed_server.hits.clear()
    _feed_server.headers.clear()
    return _feed_server


@pytest.fixture
def app_settings() -> dict[str, Any]:
    return {
        "FEEDS_ALLOW_PRIVATE": True,
        "FEEDS_TIMEOUT_SECONDS": 0.5,
        "FEEDS_MAX_BYTES": 1024 * 1024,
        "FEEDS_MAX_REDIRECTS": 3,
    }


def add_feed(app: Flask, url: str, slug: str = "gazette", bias: Bias = Bias.CENTER) -> int:
    """An outlet (made when new) with a feed at `url`; the feed's id."""
    with app.extensions["db"].session() as session:
        outlet = session.query(Outlet).filter_by(slug=slug).one_or_none()
        if outlet is None:
            outlet = Outlet(
                slug=slug,
                name=slug.title(),
                url=f"https://{slug}.example/",
                bias=bias,
                factuality=Factuality.HIGH,
            )
            session.add(outlet)
            session.flush()
        feed = Feed(outlet_id=outlet.id, url=url)
        session.add(feed)
        session.flush()
        return feed.id


def gzip_route(body: bytes) -> Handler:
    data = gzip.compress(body)

    def route(h: BaseHTTPRequestHandler) -> None:
        send(h, 200, data, "application/rss+xml", {"Content-Encoding": "gzip"})

    return route


def slow_route(seconds: float, body: bytes) -> Handler:
    def route(h: BaseHTTPRequestHandler) -> None:
        time.sleep(seconds)
        send(h, 200, body, "application/rss+xml")

    return route


def huge_route(total: int) -> Handler:
    """`total` bytes of feed-looking text, sent without a Content-Length, a chunk at a time."""

    def route(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Type", "application/rss+xml")
        h.send_header("Connection", "close")
        h.end_headers()
        h.wfile.write(b'<?xml version="1.0"?><rss version="2.0"><channel><title>')
        chunk = b"x" * 65536
        for _ in range(total // len(chunk)):
            h.wfile.write(chunk)
        h.close_connection = True

    return route


def etag_route(body: bytes, etag: str) -> Handler:
    last_modified = formatdate(usegmt=True)

    def route(h: BaseHTTPRequestHandler) -> None:
        if h.headers.get("If-None-Match") == etag:
            h.send_response(304)
            h.send_header("ETag", etag)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        send(h, 200, body, "application/rss+xml", {"ETag": etag, "Last-Modified": last_modified})

    return route


def redirect_route(target: str) -> Handler:
    def route(h: BaseHTTPRequestHandler) -> None:
        send(h, 302, b"", "text/plain", {"Location": target})

    return route
