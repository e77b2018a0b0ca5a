"""localstripe (a real Stripe peer) for the erasure tests."""

from tests.billing.conftest import localstripe  # noqa: F401 (the fixture)
