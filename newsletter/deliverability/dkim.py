"""DKIM signing (RFC 6376) of every message as it leaves `send_bytes`: rsa-sha256 and
optionally ed25519-sha256 (RFC 8463), c=relaxed/simple, d= the MAIL_FROM domain.

dkimpy is the reference (the tests verify every signature with it), but its `sign()`
does RSA in pure Python and re-parses the message, several milliseconds a message. Here
the header block is canonicalised by hand (only the covered headers), the body is one
SHA-256 pass, and the signature is one call into `cryptography`.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from newsletter.errors import ConfigError
from newsletter.mail.message import sender_domain

# Lower-case names, in the order they go into h=. Absent ones are left out.
SIGNED_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
    "mime-version",
    "content-type",
)
MIN_RSA_BITS = 2048
_WSP = re.compile(rb"[ \t]+")
_SELECTOR = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9_-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9_-]+)*")

PrivateKey = rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class DkimKey:
    selector: str
    domain: str
    key: PrivateKey

    @property
    def algorithm(self) -> str:
        return "ed25519-sha256" if isinstance(self.key, ed25519.Ed25519PrivateKey) else "rsa-sha256"

    def public_record(self) -> str:
        """The TXT record to publish at `<selector>._domainkey.<domain>`."""
        kind = "ed25519" if self.algorithm.startswith("ed") else "rsa"
        return f"v=DKIM1; k={kind}; p={public_key_b64(self.key)}"

    def _signature(self, data: bytes) -> bytes:
        if isinstance(self.key, ed25519.Ed25519PrivateKey):
            # RFC 8463: PureEdDSA over the SHA-256 hash of the signing input.
            return self.key.sign(hashlib.sha256(data).digest())
        return self.key.sign(data, padding.PKCS1v15(), hashes.SHA256())


def public_key_b64(key: PrivateKey) -> str:
    """p= of a DKIM key record: DER SubjectPublicKeyInfo for RSA, the raw 32 bytes for
    Ed25519 (RFC 8463)."""
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        raw = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return base64.b64encode(raw).decode("ascii")


def _relaxed_header(name: bytes, value: bytes) -> bytes:
    """RFC 6376 3.4.2: name lower-cased, value unfolded, white space runs to one space,
    none at the ends."""
    value = value.replace(b"\r\n", b"")
    return name.strip().lower() + b":" + _WSP.sub(b" ", value).strip(b" \t")


def _simple_body(body: bytes) -> bytes:
    """RFC 6376 3.4.3: trailing empty lines removed; an empty body is one CRLF."""
    body = body.rstrip(b"\r\n") if body.endswith(b"\r\n\r\n") else body
    if not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body


def _headers(block: bytes) -> dict[bytes, tuple[bytes, bytes]]:
    """The last occurrence of each header, by lower-case name: (name, raw value)."""
    found: dict[bytes, tuple[bytes, bytes]] = {}
    name: bytes | None = None
    parts: list[bytes] = []
    for line in block.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and name is not None:
            parts.append(line)
            continue
        if name is not None:
            found[name.lower()] = (name, b"\r\n".join(parts))
        name, sep, rest = line.partition(b":")
        if not sep:
            name = None
            continue
        parts = [rest]
    if name is not None:
        found[name.lower()] = (name, b"\r\n".join(parts))
    return found


class DkimSigner:
    """Signs message bytes with each of its keys; one instance per app, made at start."""

    def __init__(self, keys: list[DkimKey]) -> None:
        self.keys = keys

    def sign(self, data: bytes, *, now: float | None = None) -> bytes:
        """`data` with one DKIM-Signature header per key prepended."""
        end = data.find(b"\r\n\r\n")
        if end < 0:
            block, body = data, b""
        else:
            block, body = data[:end], data[end + 4 :]
        headers = _headers(block)
        names = [n for n in SIGNED_HEADERS if n.encode() in headers]
        canon = b"".join(_relaxed_header(*headers[n.encode()]) + b"\r\n" for n in names)
        body_hash = base64.b64encode(hashlib.sha256(_simple_body(body)).digest()).decode()
        stamp = int(time.time() if now is None else now)
        out: list[bytes] = []
        for key in self.keys:
            head = (
                f"v=1; a={key.algorithm}; c=relaxed/simple; d={key.domain}; "
                f"s={key.selector}; t={stamp}; h={':'.join(names)}; bh={body_hash}; b="
            )
            unsigned = _relaxed_header(b"DKIM-Signature", head.encode("ascii"))
            signature = base64.b64encode(key._signature(canon + unsigned)).decode("ascii")
            folded = head.replace("; ", ";\r\n\t")
            out.append(f"DKIM-Signature: {folded}{signature}\r\n".encode("ascii"))
        return b"".join(out) + data


def _load_key(pem: bytes, what: str) -> PrivateKey:
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{what} is not a PEM private key without a passphrase: {exc}") from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < MIN_RSA_BITS:
            raise ConfigError(f"{what} is a {key.key_size}-bit RSA key; use 2048 bits or more")
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key
    raise ConfigError(f"{what} must be an RSA or Ed25519 private key")


def _read(path: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigError(f"{what} cannot be read: {exc.strerror}") from None


def _selector(value: str, name: str) -> str:
    if not _SELECTOR.fullmatch(value):
        raise ConfigError(f"{name} must be a DNS label such as 'bsd2026', got {value!r}")
    return value


def signer_from_config(config: Mapping[str, Any]) -> DkimSigner | None:
    """The signer the DKIM_* settings describe, or None when DKIM_SELECTOR is unset.
    Raises `ConfigError` for a missing, unreadable, weak or wrong-kind key."""
    domain = sender_domain(config["MAIL_FROM"])
    keys: list[DkimKey] = []
    selector = config.get("DKIM_SELECTOR") or ""
    if selector:
        pem = config.get("DKIM_PRIVATE_KEY") or ""
        path = config.get("DKIM_PRIVATE_KEY_FILE") or ""
        if pem:
            # One env line: "\n" may be written as the two characters backslash, n.
            data = pem.replace("\\n", "\n").encode()
        elif path:
            data = _read(path, "DKIM_PRIVATE_KEY_FILE")
        else:
            raise ConfigError("DKIM_SELECTOR is set: set DKIM_PRIVATE_KEY or DKIM_PRIVATE_KEY_FILE")
        key = _load_key(data, "the DKIM private key")
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigError(
                "DKIM_PRIVATE_KEY must be an RSA key (Ed25519 goes in DKIM_ED25519_*)"
            )
        keys.append(DkimKey(_selector(selector, "DKIM_SELECTOR"), domain, key))
    ed_selector = config.get("DKIM_ED25519_SELECTOR") or ""
    ed_path = config.get("DKIM_ED25519_PRIVATE_KEY_FILE") or ""
    if ed_selector or ed_path:
        if not (ed_selector and ed_path):
            raise ConfigError(
                "set both DKIM_ED25519_SELECTOR and DKIM_ED25519_PRIVATE_KEY_FILE, or neither"
            )
        if not keys:
            # Receivers that do not know Ed25519 need the RSA signature beside it.
            raise ConfigError("an Ed25519 DKIM key needs the RSA one too (DKIM_SELECTOR)")
        ed_key = _load_key(_read(ed_path, "DKIM_ED25519_PRIVATE_KEY_FILE"), "the Ed25519 key")
        if not isinstance(ed_key, ed25519.Ed25519PrivateKey):
            raise ConfigError("DKIM_ED25519_PRIVATE_KEY_FILE must hold an Ed25519 key")
        keys.append(DkimKey(_selector(ed_selector, "DKIM_ED25519_SELECTOR"), domain, ed_key))
    return DkimSigner(keys) if keys else None
