"""Fetching one feed over HTTP(S) with urllib3, safely.

The host is resolved once, every address it resolves to is checked (no private,
loopback, link-local, multicast or reserved address unless allowed), and the connection
goes to the checked address itself, so a second DNS answer cannot swap in another
(DNS rebinding). Redirects are followed by hand, each target checked the same way, up to
a cap. The body is read incrementally, decoded (gzip, deflate), and refused once past the
size cap. Every failure is a `FetchError` whose message is plain words for staff.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    DecodeError,
    HTTPError,
    NewConnectionError,
    ReadTimeoutError,
    SSLError,
)

USER_AGENT = "BothSidesDaily/1.0 (feed reader)"
ACCEPT = "application/rss+xml, application/atom+xml, application/rdf+xml, application/xml;q=0.9, text/xml;q=0.9, */*;q=0.1"  # noqa: E501
_CHUNK = 64 * 1024


class FetchError(Exception):
    """The feed could not be fetched; `message` says why in plain words."""

    def __init__(self, message: str, status: int | None = None, bytes_read: int = 0) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.bytes_read = bytes_read


@dataclass(frozen=True)
class FetchLimits:
    timeout: float = 20.0  # seconds for the whole fetch, connect and body included
    max_bytes: int = 5 * 1024 * 1024  # decoded body
    max_redirects: int = 5
    allow_private: bool = False


@dataclass(frozen=True)
class Fetched:
    status: int  # 200, or 304 (not modified: `body` is empty)
    url: str  # the final URL, after redirects
    body: bytes
    content_type: str
    etag: str | None
    last_modified: str | None


def check_address(address: str, allow_private: bool) -> None:
    """Refuse an address a feed has no business on (the app's own network)."""
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if allow_private:
        return
    for kind, flag in (
        ("a loopback", ip.is_loopback),
        ("a private", ip.is_private),
        ("a link-local", ip.is_link_local),
        ("a multicast", ip.is_multicast),
        ("a reserved", ip.is_reserved or ip.is_unspecified),
    ):
        if flag:
            raise FetchError(f"refused: {ip} is {kind} address")
    if not ip.is_global:
        raise FetchError(f"refused: {ip} is not a public address")


def _resolve(host: str, port: int, allow_private: bool) -> str:
    """The first address of `host`, after checking every one of them."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise FetchError(f"the host name {host} could not be resolved ({exc})") from None
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    if not addresses:
        raise FetchError(f"the host name {host} has no address")
    for address in addresses:
        check_address(address, allow_private)
    return addresses[0]


def check_url(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path with query) of an http(s) URL, or `FetchError`."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise FetchError(f"the address is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise FetchError("only http:// and https:// addresses can be fetched")
    if not parts.hostname:
        raise FetchError("the address has no host name")
    if parts.username or parts.password:
        raise FetchError("the address must not hold a user name or password")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80), path


def fetch(
    url: str,
    limits: FetchLimits,
    *,
    etag: str | None = None,
    last_modified: str | None = None,
) -> Fetched:
    deadline = time.monotonic() + limits.timeout
    current = url
    for _hop in range(limits.max_redirects + 1):
        response = _request(current, limits, deadline, etag, last_modified)
        try:
            if response.status in (301, 302, 303, 307, 308):
                location = response.headers.get("Location")
                if not location:
                    raise FetchError(
                        f"the server answered {response.status} without a Location",
                        response.status,
                    )
                current = urljoin(current, location.strip())
                continue
            if response.status == 304:
                return Fetched(304, current, b"", "", etag, last_modified)
            if response.status != 200:
                raise FetchError(
                    f"the server answered HTTP {response.status} {response.reason or ''}".strip(),
                    response.status,
                )
            body = _read_body(response, limits, deadline)
            return Fetched(
                200,
                current,
                body,
                response.headers.get("Content-Type", ""),
                response.headers.get("ETag"),
                response.headers.get("Last-Modified"),
            )
        finally:
            response.release_conn()
            response.close()
    raise FetchError(
        f"redirected more than {limits.max_redirects} times (a redirect loop?); last to {current}"
    )


def _request(
    url: str,
    limits: FetchLimits,
    deadline: float,
    etag: str | None,
    last_modified: str | None,
) -> urllib3.BaseHTTPResponse:
    scheme, host, port, path = check_url(url)
    address = _resolve(host, port, limits.allow_private)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise FetchError(f"timed out after {limits.timeout:g} seconds")
    named = f"[{host}]" if ":" in host else host  # an IPv6 literal
    headers = {
        "Host": named if port in (80, 443) else f"{named}:{port}",
        "User-Agent": USER_AGENT,
        "Accept": ACCEPT,
        "Accept-Encoding": "gzip, deflate",
    }
    if etag:
        headers["If-None-Match"] = etag
    if last_modified:
        headers["If-Modified-Since"] = last_modified
    timeout = urllib3.Timeout(connect=min(remaining, 10.0), read=remaining)
    pool: urllib3.HTTPConnectionPool
    if scheme == "https":
        # Connect to the checked address; verify the certificate against the host name.
        pool = urllib3.HTTPSConnectionPool(
            address,
            port,
            timeout=timeout,
            retries=False,
            cert_reqs="CERT_REQUIRED",
            server_hostname=host,
            assert_hostname=host,
        )
    else:
        pool = urllib3.HTTPConnectionPool(address, port, timeout=timeout, retries=False)
    try:
        return pool.urlopen(
            "GET",
            path,
            headers=headers,
            redirect=False,
            preload_content=False,
            decode_content=True,
            assert_same_host=False,
        )
    except (ConnectTimeoutError, ReadTimeoutError):
        raise FetchError(f"timed out after {limits.timeout:g} seconds") from None
    except SSLError as exc:
        raise FetchError(f"the secure connection failed ({_reason(exc)})") from None
    except NewConnectionError as exc:
        raise FetchError(f"could not connect to {host} ({_reason(exc)})") from None
    except HTTPError as exc:
        if "timed out" in str(exc).lower():
            raise FetchError(f"timed out after {limits.timeout:g} seconds") from None
        raise FetchError(f"the connection failed ({_reason(exc)})") from None


def _read_body(response: urllib3.BaseHTTPResponse, limits: FetchLimits, deadline: float) -> bytes:
    length = response.headers.get("Content-Length", "")
    encoded = response.headers.get("Content-Encoding", "identity").lower() != "identity"
    if length.isdigit() and not encoded and int(length) > limits.max_bytes:
        raise FetchError(_too_big(limits), response.status)
    chunks: list[bytes] = []
    size = 0
    try:
        for chunk in response.stream(_CHUNK, decode_content=True):
            size += len(chunk)
            if size > limits.max_bytes:
                raise FetchError(_too_big(limits), response.status, size)
            if time.monotonic() > deadline:
                raise FetchError(f"timed out after {limits.timeout:g} seconds", response.status)
            chunks.append(chunk)
    except ReadTimeoutError:
        raise FetchError(f"timed out after {limits.timeout:g} seconds", response.status) from None
    except DecodeError:
        raise FetchError("the compressed body could not be decoded", response.status) from None
    except HTTPError as exc:
        if "timed out" in str(exc).lower():
            raise FetchError(f"timed out after {limits.timeout:g} seconds") from None
        raise FetchError(f"the connection broke off ({_reason(exc)})", response.status) from None
    return b"".join(chunks)


def _too_big(limits: FetchLimits) -> str:
    return f"the feed is larger than {limits.max_bytes // 1024} KB; refused"


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text.split(": ", 1)[-1][:200] if text else type(exc).__name__
