"""Every model, imported in one place for Alembic and for tests."""

from newsletter.admin.models import AuditEntry
from newsletter.billing.models import BillingCustomer, BillingSubscription, StripeEvent
from newsletter.deliverability.models import ReceivedReport, WebhookToken
from newsletter.delivery.models import Delivery
from newsletter.editions.models import Edition, EditionStory, EditionVariant
from newsletter.locks import JobLock
from newsletter.mail.templates.models import EmailTemplate, TemplateFailure, TemplateVersion
from newsletter.ratelimit import RateLimitHit
from newsletter.readers.models import Consent, Reader
from newsletter.scheduling import SchedulerJob
from newsletter.stories.models import Article, Outlet, Story
from newsletter.tracking.models import Click, Event, Read

__all__ = [
    "BillingCustomer",
    "BillingSubscription",
    "StripeEvent",
    "AuditEntry",
    "EmailTemplate",
    "TemplateFailure",
    "TemplateVersion",
    "Article",
    "Click",
    "Event",
    "Read",
    "Consent",
    "Delivery",
    "ReceivedReport",
    "WebhookToken",
    "Edition",
    "EditionStory",
    "EditionVariant",
    "JobLock",
    "Outlet",
    "RateLimitHit",
    "Reader",
    "SchedulerJob",
    "Story",
]
