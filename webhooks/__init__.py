"""The Stripe webhook endpoint lives here; it arrives with the billing issue."""
