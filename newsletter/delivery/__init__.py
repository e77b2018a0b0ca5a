"""Delivery: the per-recipient ledger and the send loop."""
