"""Billing: plans, entitlement, and (later) Stripe."""
