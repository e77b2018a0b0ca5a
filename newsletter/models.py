"""Every model, imported in one place for Alembic and for tests."""

from newsletter.delivery.models import Delivery
from newsletter.editions.models import Edition, EditionStory, EditionVariant
from newsletter.ratelimit import RateLimitHit
from newsletter.readers.models import Consent, Reader
from newsletter.scheduling import SchedulerJob
from newsletter.stories.models import Article, Outlet, Story

__all__ = [
    "Article",
    "Consent",
    "Delivery",
    "Edition",
    "EditionStory",
    "EditionVariant",
    "Outlet",
    "RateLimitHit",
    "Reader",
    "SchedulerJob",
    "Story",
]
