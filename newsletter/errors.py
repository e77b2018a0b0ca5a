"""Domain exceptions. Entrypoints translate them: a 4xx page, a JSON error, exit code 1."""

from __future__ import annotations

# What a 500 says, from the app's error handler and from `lean` routes alike.
UNEXPECTED_ERROR = "Something went wrong on our side. Please try again."


class NewsletterError(Exception):
    """Base for every error the app expects and explains to the person who caused it."""

    status_code = 400

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConfigError(NewsletterError):
    """The environment is wrong; the process refuses to start."""


class InvalidInput(NewsletterError):
    """A value from outside (form, CLI, file) failed validation."""


class InvalidToken(NewsletterError):
    """A link token is forged, truncated, expired, for another purpose, or already used."""

    status_code = 400

    def __init__(self, message: str, *, expired: bool = False) -> None:
        super().__init__(message)
        self.expired = expired


class NotFound(NewsletterError):
    status_code = 404


class RateLimited(NewsletterError):
    status_code = 429

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after
