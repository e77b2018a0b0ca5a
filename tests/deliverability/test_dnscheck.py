"""`newsletter deliverability check` against a real DNS server with good and broken zones."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from newsletter.deliverability.dkim import DkimKey, DkimSigner
from newsletter.deliverability.dnscheck import check_dns
from newsletter.errors import ConfigError
from tests.deliverability import dns_server as fixtures
from tests.deliverability.dns_server import DnsServer, Zone
from tests.deliverability.keys import keys
from tests.deliverability.test_dkim_verp import settings as dkim_settings

_dns_server, dns_server = fixtures._dns_server, fixtures.dns_server

DOMAIN = "bothsides.test"
BOUNCE = "bounces.bothsides.test"


def signer() -> DkimSigner:
    k = keys()
    return DkimSigner([DkimKey("s2026", DOMAIN, k.rsa), DkimKey("ed2026", DOMAIN, k.ed)])


def good_zone() -> Zone:
    s = signer()
    return {
        (DOMAIN, "TXT"): ["v=spf1 ip4:192.0.2.25 -all", "google-site-verification=abc"],
        (BOUNCE, "TXT"): ["v=spf1 ip4:192.0.2.25 -all"],
        (BOUNCE, "MX"): ["mx.bothsides.test"],
        (f"s2026._domainkey.{DOMAIN}", "TXT"): [s.keys[0].public_record()],
        (f"ed2026._domainkey.{DOMAIN}", "TXT"): [s.keys[1].public_record()],
        (f"_dmarc.{DOMAIN}", "TXT"): ["v=DMARC1; p=quarantine; rua=mailto:dmarc@bothsides.test"],
    }


def config(server: DnsServer, **extra: str) -> dict[str, str]:
    return {
        "MAIL_FROM": f"Both Sides Daily <daily@{DOMAIN}>",
        "BOUNCE_ADDRESS": f"bounces@{BOUNCE}",
        "DNS_RESOLVER": server.address,
        **extra,
    }


def problems(server: DnsServer, zone: Zone, sign: DkimSigner | None = None, **extra: str):  # type: ignore[no-untyped-def]
    server.resolver.zone = zone
    findings = check_dns(config(server, **extra), sign if sign is not None else signer())
    return {f.what: f.says for f in findings if not f.ok}


def test_a_good_zone_has_no_problems(dns_server):
    assert problems(dns_server, good_zone()) == {}


def test_dkim_keys_split_over_several_txt_strings_are_joined(dns_server):
    zone = good_zone()
    assert len(zone[(f"s2026._domainkey.{DOMAIN}", "TXT")][0]) > 255  # the server splits it
    assert problems(dns_server, zone) == {}


@pytest.mark.parametrize(
    ("change", "what", "says"),
    [
        (lambda z: z.pop((DOMAIN, "TXT")), "SPF", "has no SPF record"),
        (
            lambda z: z[(DOMAIN, "TXT")].append("v=spf1 include:other.example ~all"),
            "SPF",
            "2 SPF records",
        ),
        (lambda z: z.update({(DOMAIN, "TXT"): ["v=spf1 +all"]}), "SPF", "lets anyone send"),
        (lambda z: z.pop((BOUNCE, "TXT")), "SPF of the bounce domain", "has no SPF record"),
        (
            lambda z: z.pop((f"s2026._domainkey.{DOMAIN}", "TXT")),
            "DKIM rsa-sha256",
            "no key published at s2026._domainkey.bothsides.test: publish v=DKIM1; k=rsa; p=",
        ),
        (
            lambda z: z.update(
                {(f"ed2026._domainkey.{DOMAIN}", "TXT"): ["v=DKIM1; k=ed25519; p="]}
            ),
            "DKIM ed25519-sha256",
            "is revoked",
        ),
        (lambda z: z.pop((f"_dmarc.{DOMAIN}", "TXT")), "DMARC", "has no DMARC record"),
        (
            lambda z: z.update({(f"_dmarc.{DOMAIN}", "TXT"): ["v=DMARC1; p=maybe"]}),
            "DMARC",
            "no valid policy",
        ),
        (lambda z: z.pop((BOUNCE, "MX")), "Bounce domain", "neither MX nor A records"),
    ],
)
def test_each_broken_record_is_named(dns_server, change, what, says):
    zone = good_zone()
    change(zone)
    found = problems(dns_server, zone)
    assert list(found) == [what]
    assert says in found[what]


def test_a_key_that_is_not_ours_is_a_mismatch(dns_server):
    zone = good_zone()
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    zone[(f"s2026._domainkey.{DOMAIN}", "TXT")] = [DkimKey("s", DOMAIN, other).public_record()]
    found = problems(dns_server, zone)
    assert "does not match our private key" in found["DKIM rsa-sha256"]


def test_unsigned_mail_on_another_organizations_bounce_domain_is_not_aligned(dns_server):
    zone = good_zone()
    zone[("bounce.esp.example", "TXT")] = ["v=spf1 -all"]
    zone[("bounce.esp.example", "MX")] = ["mx.esp.example"]
    server = dns_server
    server.resolver.zone = zone
    findings = check_dns(config(server, BOUNCE_ADDRESS="b@bounce.esp.example"), None)
    found = {f.what: f.says for f in findings if not f.ok}
    assert "mail is not signed" in found["DKIM"]
    assert "neither DKIM nor SPF aligns with bothsides.test" in found["DMARC alignment"]


def test_strict_spf_alignment_needs_the_same_domain(dns_server):
    zone = good_zone()
    zone[(f"_dmarc.{DOMAIN}", "TXT")] = ["v=DMARC1; p=reject; aspf=s"]
    dns_server.resolver.zone = zone
    findings = check_dns(config(dns_server), None)
    found = {f.what: f.says for f in findings if not f.ok}
    assert "DMARC alignment" in found  # bounces.bothsides.test is not bothsides.test, no DKIM


def test_a_dmarc_record_on_the_organizational_domain_counts(dns_server):
    zone = good_zone()
    record = zone.pop((f"_dmarc.{DOMAIN}", "TXT"))
    zone[("_dmarc.bothsides.test", "TXT")] = record
    dns_server.resolver.zone = zone
    findings = check_dns(config(dns_server, MAIL_FROM="d@news.bothsides.test"), None)
    dmarc = [f for f in findings if f.what == "DMARC"]
    assert dmarc[0].ok and "_dmarc.bothsides.test" in dmarc[0].says


def test_a_silent_server_is_a_failed_lookup_not_a_crash():
    from tests.smtp_server import free_port

    findings = check_dns(
        {"MAIL_FROM": f"d@{DOMAIN}", "DNS_RESOLVER": f"127.0.0.1:{free_port()}"}, None
    )
    assert findings and all("lookup" in f.says for f in findings if f.what in ("SPF", "DMARC"))


@pytest.mark.parametrize("value", ["127.0.0.1", "localhost:dns", ":53"])
def test_a_bad_resolver_setting_is_a_config_error(value):
    with pytest.raises(ConfigError, match="DNS_RESOLVER"):
        check_dns({"MAIL_FROM": f"d@{DOMAIN}", "DNS_RESOLVER": value}, None)


@pytest.fixture
def app_settings(tmp_path, _dns_server):  # type: ignore[no-untyped-def]
    return dkim_settings(
        tmp_path,
        MAIL_FROM=f"Both Sides Daily <daily@{DOMAIN}>",
        BOUNCE_ADDRESS=f"bounces@{BOUNCE}",
        DNS_RESOLVER=_dns_server.address,
    )


def test_the_command_exits_0_when_all_is_well_and_1_with_plain_words_when_not(
    app, runner, dns_server
):
    dns_server.resolver.zone = good_zone()
    result = runner.invoke(args=["deliverability", "check"])
    assert result.exit_code == 0, result.output
    assert "Everything checks out." in result.output
    assert "ok       DKIM rsa-sha256: s2026._domainkey.bothsides.test publishes" in result.output

    zone = good_zone()
    zone.pop((f"_dmarc.{DOMAIN}", "TXT"))
    dns_server.resolver.zone = zone
    result = runner.invoke(args=["deliverability", "check"])
    assert result.exit_code == 1
    assert "PROBLEM  DMARC: bothsides.test has no DMARC record" in result.output
    assert "1 problem(s)" in result.output
