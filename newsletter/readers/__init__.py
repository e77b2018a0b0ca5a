"""Readers: signup with double opt-in, consent, account settings, unsubscribe."""
