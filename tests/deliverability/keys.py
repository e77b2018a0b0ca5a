"""DKIM keys for tests (made once per session) and dkimpy verification against them
(dkimpy checks Ed25519 signatures through PyNaCl, a dev dependency)."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import dkim
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from newsletter.deliverability.dkim import DkimKey


@dataclass(frozen=True)
class Keys:
    rsa_pem: bytes
    ed_pem: bytes
    rsa: rsa.RSAPrivateKey
    ed: ed25519.Ed25519PrivateKey

    def write(self, directory: Path) -> tuple[Path, Path]:
        rsa_path, ed_path = directory / "dkim-rsa.pem", directory / "dkim-ed25519.pem"
        rsa_path.write_bytes(self.rsa_pem)
        ed_path.write_bytes(self.ed_pem)
        return rsa_path, ed_path


@cache
def keys() -> Keys:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ed_key = ed25519.Ed25519PrivateKey.generate()

    def pem(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    return Keys(pem(rsa_key), pem(ed_key), rsa_key, ed_key)


def dns_records(
    domain: str, rsa_selector: str = "s2026", ed_selector: str = "ed2026"
) -> dict[bytes, bytes]:
    k = keys()
    return {
        f"{rsa_selector}._domainkey.{domain}.".encode(): DkimKey(rsa_selector, domain, k.rsa)
        .public_record()
        .encode(),
        f"{ed_selector}._domainkey.{domain}.".encode(): DkimKey(ed_selector, domain, k.ed)
        .public_record()
        .encode(),
    }


def verify_all(data: bytes, records: dict[bytes, bytes]) -> list[tuple[bytes, bool]]:
    """(a= of each DKIM-Signature, whether dkimpy verifies it), in header order."""

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        return records.get(name)

    checker = dkim.DKIM(data)
    sigs = [v for n, v in checker.headers if n.lower() == b"dkim-signature"]
    out = []
    for idx, sig in enumerate(sigs):
        algorithm = dkim.util.parse_tag_value(sig.replace(b"\r\n", b""))[b"a"]
        try:
            ok = bool(checker.verify(idx=idx, dnsfunc=dnsfunc))
        except dkim.ValidationError:  # e.g. the body hash does not match
            ok = False
        out.append((algorithm, ok))
    return out
