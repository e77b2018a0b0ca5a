"""Scheduled jobs: thin wrappers that open an app context, call services, commit."""
