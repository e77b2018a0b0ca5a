"""`newsletter deliverability check`: what receiving servers will find in DNS about our
mail, in plain words. Gmail, Yahoo and Outlook.com reject bulk mail without SPF, DKIM
and a DMARC policy aligned with the From domain.

Looks up SPF (TXT v=spf1 on MAIL_FROM's domain, and on the bounce domain that the VERP
envelope uses), each DKIM selector's key (it must match our private key), DMARC
(_dmarc TXT, its policy and alignment with MAIL_FROM's domain) and MX/A for the bounce
domain. DNS_RESOLVER (host:port) sends the queries to one server, for testing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.resolver

from newsletter.deliverability.dkim import DkimSigner, public_key_b64
from newsletter.errors import ConfigError
from newsletter.mail.message import sender_domain

TIMEOUT = 5.0


@dataclass(frozen=True)
class Finding:
    what: str
    ok: bool
    says: str


class _Lookup:
    def __init__(self, resolver_setting: str) -> None:
        if resolver_setting:
            host, _, port = resolver_setting.rpartition(":")
            if not host or not port.isdigit():
                raise ConfigError(
                    f"DNS_RESOLVER must look like 127.0.0.1:5353, got {resolver_setting!r}"
                )
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [host.strip("[]")]
            self.resolver.port = int(port)
        else:
            self.resolver = dns.resolver.Resolver()
        self.resolver.lifetime = TIMEOUT

    def txt(self, name: str) -> list[str] | None:
        """The TXT strings at `name` ([] when there are none); None when DNS failed."""
        try:
            answer = self.resolver.resolve(name, "TXT")
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.exception.DNSException:
            return None
        return [b"".join(r.strings).decode("utf-8", "replace") for r in answer]

    def exists(self, name: str, kind: str) -> bool | None:
        try:
            self.resolver.resolve(name, kind)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return False
        except dns.exception.DNSException:
            return None
        return True


def _tags(record: str) -> dict[str, str]:
    tags = {}
    for part in record.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags[name.strip().lower()] = "".join(value.split())
    return tags


def organizational(domain: str) -> str:
    """The registrable domain, approximated as the last two labels (three under a
    two-letter country code's second level such as co.uk); enough for alignment."""
    labels = domain.lower().rstrip(".").split(".")
    if (
        len(labels) >= 3
        and len(labels[-1]) == 2
        and labels[-2] in {"co", "com", "org", "net", "ac", "gov"}
    ):
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def _aligned(domain: str, other: str, mode: str) -> bool:
    if mode == "s":
        return domain.lower() == other.lower()
    return organizational(domain) == organizational(other)


def _failed(what: str, name: str) -> Finding:
    return Finding(what, False, f"the DNS lookup of {name} failed (no answer in time)")


def _spf(lookup: _Lookup, domain: str, what: str) -> Finding:
    found = lookup.txt(domain)
    if found is None:
        return _failed(what, domain)
    records = [r for r in found if r.lower().startswith("v=spf1")]
    if not records:
        return Finding(
            what,
            False,
            f"{domain} has no SPF record (a TXT record starting v=spf1 that names "
            "the servers allowed to send its mail)",
        )
    if len(records) > 1:
        return Finding(
            what,
            False,
            f"{domain} has {len(records)} SPF records; receivers treat more than one as an error",
        )
    record = records[0]
    terms = record.lower().split()
    if "+all" in terms or "all" in terms:
        return Finding(
            what, False, f"{domain}'s SPF record ends in +all: it lets anyone send as {domain}"
        )
    return Finding(what, True, f"{domain}: {record}")


def _dkim(lookup: _Lookup, signer: DkimSigner | None, domain: str) -> list[Finding]:
    if signer is None:
        return [
            Finding(
                "DKIM",
                False,
                "mail is not signed: set DKIM_SELECTOR and DKIM_PRIVATE_KEY_FILE "
                "(see docs/bounces.md)",
            )
        ]
    out = []
    for key in signer.keys:
        name = f"{key.selector}._domainkey.{domain}"
        what = f"DKIM {key.algorithm}"
        found = lookup.txt(name)
        if found is None:
            out.append(_failed(what, name))
            continue
        records = [_tags(r) for r in found if "p=" in r]
        if not records:
            out.append(
                Finding(what, False, f"no key published at {name}: publish {key.public_record()}")
            )
            continue
        published = records[0].get("p", "")
        if not published:
            out.append(Finding(what, False, f"the key at {name} is revoked (empty p=)"))
        elif published != public_key_b64(key.key):
            out.append(
                Finding(
                    what,
                    False,
                    f"the key at {name} does not match our private key: "
                    f"publish {key.public_record()}",
                )
            )
        else:
            out.append(Finding(what, True, f"{name} publishes the public half of our key"))
    return out


def _dmarc(lookup: _Lookup, domain: str, envelope_domain: str, signing: bool) -> list[Finding]:
    name = f"_dmarc.{domain}"
    found = lookup.txt(name)
    if found is not None and not [r for r in found if r.startswith("v=DMARC1")]:
        org = organizational(domain)
        if org != domain:
            name = f"_dmarc.{org}"
            found = lookup.txt(name)
    if found is None:
        return [_failed("DMARC", name)]
    records = [r for r in found if r.startswith("v=DMARC1")]
    if not records:
        return [
            Finding(
                "DMARC",
                False,
                f"{domain} has no DMARC record: publish one at _dmarc.{domain}, "
                f"e.g. v=DMARC1; p=none; rua=mailto:dmarc@{domain}",
            )
        ]
    tags = _tags(records[0])
    policy = tags.get("p", "")
    out = []
    if policy not in ("none", "quarantine", "reject"):
        out.append(
            Finding("DMARC", False, f"{name} has no valid policy (p=none, quarantine or reject)")
        )
    else:
        note = (
            " (monitoring only; quarantine or reject protects the domain)"
            if policy == "none"
            else ""
        )
        out.append(Finding("DMARC", True, f"{name}: policy {policy}{note}"))
    spf_aligned = _aligned(envelope_domain, domain, tags.get("aspf", "r"))
    dkim_aligned = signing and _aligned(domain, domain, tags.get("adkim", "r"))
    if dkim_aligned or spf_aligned:
        how = " and ".join(
            name
            for name, ok in (
                ("DKIM (d=" + domain + ")", dkim_aligned),
                ("SPF (" + envelope_domain + ")", spf_aligned),
            )
            if ok
        )
        out.append(Finding("DMARC alignment", True, f"aligned with {domain} through {how}"))
    else:
        out.append(
            Finding(
                "DMARC alignment",
                False,
                f"neither DKIM nor SPF aligns with {domain}: the envelope domain {envelope_domain} "
                "is another organization's and mail is not DKIM-signed",
            )
        )
    return out


def _bounce_domain(lookup: _Lookup, domain: str) -> Finding:
    what = "Bounce domain"
    mx = lookup.exists(domain, "MX")
    if mx:
        return Finding(what, True, f"{domain} has MX records: bounces can reach us")
    address = lookup.exists(domain, "A") or lookup.exists(domain, "AAAA")
    if mx is None and address is None:
        return _failed(what, domain)
    if address:
        return Finding(
            what, True, f"{domain} has no MX but an address record: bounces can reach us"
        )
    return Finding(
        what,
        False,
        f"{domain} has neither MX nor A records: bounces (and with them suppressions) are lost",
    )


def check_dns(config: Mapping[str, Any], signer: DkimSigner | None) -> list[Finding]:
    """Every finding, problems included; raises `ConfigError` for a bad DNS_RESOLVER."""
    lookup = _Lookup(config.get("DNS_RESOLVER") or "")
    domain = sender_domain(config["MAIL_FROM"])
    bounce = config.get("BOUNCE_ADDRESS") or ""
    envelope_domain = bounce.rpartition("@")[2] if bounce else domain
    findings = [_spf(lookup, domain, "SPF")]
    if envelope_domain != domain:
        findings.append(_spf(lookup, envelope_domain, "SPF of the bounce domain"))
    findings += _dkim(lookup, signer, domain)
    findings += _dmarc(lookup, domain, envelope_domain, signer is not None)
    if bounce:
        findings.append(_bounce_domain(lookup, envelope_domain))
    else:
        findings.append(
            Finding(
                "Bounce domain",
                True,
                "BOUNCE_ADDRESS is unset: bounces go to MAIL_FROM's address without VERP",
            )
        )
    return findings
