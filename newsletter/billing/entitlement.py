"""The one function that says what plan a reader is on.

Everything that depends on the plan asks here: the meter, the account page, `/api/me`,
and which edition variant a reader gets. Until Stripe billing lands, no reader has a
subscription, so every reader is on the free plan.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from newsletter.readers.models import Reader


class Plan(StrEnum):
    FREE = "free"
    TRIAL = "trial"
    PAID = "paid"


def plan_of(reader: Reader, now: datetime | None = None) -> Plan:
    return Plan.FREE


def trial_ends_at(reader: Reader) -> datetime | None:
    return None
