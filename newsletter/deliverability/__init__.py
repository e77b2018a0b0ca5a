"""Deliverability: bounce and complaint reports from every source (provider webhooks, the
bounce mailbox, the SMTP session itself), the policy that turns them into suppressions
and pauses, and the rates staff watch."""
