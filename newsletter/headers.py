"""The headers every response gets, whichever path answered it (Flask or `newsletter.lean`)."""

from __future__ import annotations

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)
_ALWAYS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
)


def security_headers(present: set[str], csp: str | None, *, hsts: bool) -> list[tuple[str, str]]:
    """The security headers a response lacks, given the (lower-case) names it has and its
    own Content-Security-Policy if it set one: a view's own header always wins."""
    missing = []
    if csp is None:
        csp = CONTENT_SECURITY_POLICY
        missing.append(("Content-Security-Policy", csp))
    missing += [(name, value) for name, value in _ALWAYS if name.lower() not in present]
    if "x-frame-options" not in present:
        framing = "frame-ancestors 'none'" in csp
        missing.append(("X-Frame-Options", "DENY" if framing else "SAMEORIGIN"))
    if hsts and "strict-transport-security" not in present:
        missing.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
    return missing
