"""A real DNS server on loopback (dnslib) answering from a zone the test sets."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from dnslib import AAAA, MX, QTYPE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer

from tests.smtp_server import free_port

Zone = dict[tuple[str, str], list[str]]  # (name without trailing dot, type) -> values


def _rdata(kind: str, value: str):  # type: ignore[no-untyped-def]
    if kind == "TXT":
        data = value.encode()
        return TXT([data[i : i + 255] for i in range(0, len(data), 255)])  # 255-octet strings
    if kind == "MX":
        return MX(value)
    if kind == "A":
        return A(value)
    return AAAA(value)


@dataclass
class ZoneResolver(BaseResolver):
    zone: Zone = field(default_factory=dict)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).rstrip(".").lower()
        kind = QTYPE[request.q.qtype]
        for value in self.zone.get((name, kind), []):
            reply.add_answer(
                RR(request.q.qname, request.q.qtype, rdata=_rdata(kind, value), ttl=60)
            )
        if not reply.rr and not any(n == name for n, _ in self.zone):
            reply.header.rcode = 3  # NXDOMAIN
        return reply


@dataclass
class DnsServer:
    port: int
    resolver: ZoneResolver
    server: DNSServer

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


@pytest.fixture(scope="session")
def _dns_server() -> Iterator[DnsServer]:
    resolver = ZoneResolver()
    port = free_port()
    server = DNSServer(resolver, port=port, address="127.0.0.1", logger=DNSLogger("-"))
    server.start_thread()
    yield DnsServer(port, resolver, server)
    server.stop()


@pytest.fixture
def dns_server(_dns_server: DnsServer) -> DnsServer:
    _dns_server.resolver.zone = {}
    return _dns_server
