"""One article, one URL: the canonical form of an article's address.

Feeds hand out the same article under several addresses (tracking parameters from a
newsletter, an upper-case host, an explicit default port, a fragment), so articles are
stored and deduplicated by `canonical_url(url)`.
"""

from __future__ import annotations

from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

from newsletter.errors import InvalidInput

_DEFAULT_PORTS = {"http": 80, "https": 443}
# Parameters that say where a click came from, never which page it is.
_TRACKING = frozenset(
    {
        "fbclid",
        "gclid",
        "dclid",
        "gclsrc",
        "msclkid",
        "mc_cid",
        "mc_eid",
        "igshid",
        "yclid",
        "_ga",
        "_gl",
        "mkt_tok",
        "oly_anon_id",
        "oly_enc_id",
        "vero_id",
        "wt_mc",
        "cmpid",
        "ocid",
        "smid",
        "ns_source",
        "ns_mchannel",
        "ns_campaign",
    }
)
_TRACKING_PREFIXES = ("utm_", "pk_", "mtm_")


class BadArticleUrl(InvalidInput):
    """The address is not an absolute http(s) URL."""


def is_tracking_param(name: str) -> bool:
    key = name.lower()
    return key in _TRACKING or key.startswith(_TRACKING_PREFIXES)


def canonical_url(url: str) -> str:
    """`url` with the scheme and host lower-cased, the default port, the fragment and the
    tracking parameters (`utm_*`, `fbclid`, `gclid`, `mc_cid`, `mc_eid`, …) dropped, and
    the other query parameters kept in their order.

    Raises `BadArticleUrl` for anything but an absolute http(s) URL with a host.
    """
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise BadArticleUrl(f"not a valid URL: {url[:200]!r}") from exc
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").rstrip(".")
    if scheme not in _DEFAULT_PORTS or not host:
        raise BadArticleUrl(f"not an absolute http(s) URL: {url[:200]!r}")
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    netloc = host if port is None or port == _DEFAULT_PORTS[scheme] else f"{host}:{port}"
    path = parts.path or "/"
    query = urlencode(
        [
            (k, v)
            for k, v in parse_qsl(parts.query, keep_blank_values=True)
            if not is_tracking_param(k)
        ],
        quote_via=quote,
        safe="/:@!$'()*,;~",
    )
    return urlunsplit((scheme, netloc, path, query, ""))
