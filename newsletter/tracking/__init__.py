"""Tracked links, clicks, the monthly meter and paywall events."""
