"""The headers every response gets, whichever path answered it (Flask or `newsletter.lean`)."""

from __future__ import annotations

# Stripe's hosted Checkout and portal: the billing forms' POST answers with a redirect
# there, and Chromium holds a form's redirects to form-action too.
STRIPE_PAGES = "https://checkout.stripe.com https://billing.stripe.com"


def content_security_policy(form_origins: str = STRIPE_PAGES) -> str:
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"frame-src 'self'; frame-ancestors 'none'; form-action 'self' {form_origins}; "
        "base-uri 'none'; object-src 'none'"
    )


CONTENT_SECURITY_POLICY = content_security_policy()
_ALWAYS = (
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "strict-origin-when-cross-origin"),
)


def security_headers(
    present: set[str], csp: str | None, *, hsts: bool, default_csp: str = CONTENT_SECURITY_POLICY
) -> list[tuple[str, str]]:
    """The security headers a response lacks, given the (lower-case) names it has and its
    own Content-Security-Policy if it set one: a view's own header always wins."""
    missing = []
    if csp is None:
        csp = default_csp
        missing.append(("Content-Security-Policy", csp))
    missing += [(name, value) for name, value in _ALWAYS if name.lower() not in present]
    if "x-frame-options" not in present:
        framing = "frame-ancestors 'none'" in csp
        missing.append(("X-Frame-Options", "DENY" if framing else "SAMEORIGIN"))
    if hsts and "strict-transport-security" not in present:
        missing.append(("Strict-Transport-Security", "max-age=31536000; includeSubDomains"))
    return missing
