"""Every model, imported in one place for Alembic and for tests."""

from newsletter.ratelimit import RateLimitHit
from newsletter.readers.models import Consent, Reader
from newsletter.scheduling import SchedulerJob

__all__ = ["Consent", "RateLimitHit", "Reader", "SchedulerJob"]
