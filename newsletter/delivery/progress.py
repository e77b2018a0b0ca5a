"""How far a send has got: this run's counts, and what is left of the editions it sends.

The sender asks `status` when it has nothing to claim (to know whether to wait), and
`send_queued` passes a `SendProgress` to its caller's callback (the progress line of
`newsletter edition send`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import case, func, select
from sqlalchemy.orm import Session

from newsletter.delivery.ledger import deliveries, pending
from newsletter.editions.models import Edition


@dataclass
class SendReport:
    """What this run did (another process sharing the send counts its own)."""

    sent: int = 0
    retried: int = 0  # temporary refusals put back in the queue
    failed: int = 0  # temporary refusals with no attempt left
    suppressed: int = 0  # permanent refusals, and readers who left before their turn
    resent_after_crash: int = 0  # rows found `sending` after a crash and sent again

    @property
    def finished(self) -> int:
        return self.sent + self.failed + self.suppressed


@dataclass(frozen=True)
class SendProgress:
    report: SendReport
    remaining: int  # rows of the editions being sent that are not final yet
    held_elsewhere: int = 0  # of which leased by another sender (alive, or dead until expiry)
    retrying: int = 0  # of which waiting for their next attempt
    next_at: datetime | None = None  # when the next of those becomes claimable
    done: bool = False


class Status(NamedTuple):
    remaining: int  # rows not final yet
    held_here: int  # of which leased by this run's threads
    held_elsewhere: int  # leased by another sender (alive, or dead until the lease ends)
    retrying: int  # waiting for their next attempt
    next_at: datetime | None  # when the next row held elsewhere or retrying is claimable


def status(session: Session, scope: list[int], run_id: str, now: datetime) -> Status:
    """How many rows of the editions in `scope` are left, and what the unclaimable ones
    wait for; rows claimed by a thread named `run_id:…` are this run's."""
    d = deliveries.c
    leased = d.lease_until >= now
    here = leased & (func.substr(d.claimed_by, 1, len(run_id)) == run_id)
    elsewhere = leased & ~here
    later = (d.lease_until.is_(None) | (d.lease_until < now)) & (d.next_attempt_at > now)
    row = session.execute(
        select(
            func.count(),
            func.sum(case((here, 1), else_=0)),
            func.sum(case((elsewhere, 1), else_=0)),
            func.sum(case((later, 1), else_=0)),
            func.min(case((elsewhere, d.lease_until))),
            func.min(case((later, d.next_attempt_at))),
        ).where(
            d.edition_id.in_(scope),
            pending(),
            # A paused edition's rows wait for a later run: this one does not wait for them.
            d.edition_id.not_in(select(Edition.id).where(Edition.paused)),
        )
    ).one()
    remaining, held_here, held_elsewhere, retrying, lease_end, retry_at = row
    times = [t for t in (lease_end, retry_at) if t is not None]
    return Status(
        remaining or 0,
        held_here or 0,
        held_elsewhere or 0,
        retrying or 0,
        min(times) if times else None,
    )


def report_progress(
    progress: Callable[[SendProgress], None],
    report: SendReport,
    session: Session,
    scope: list[int],
    run_id: str,
    now: datetime,
    *,
    done: bool = False,
) -> None:
    """Tell `progress` where the send stands."""
    found = status(session, scope, run_id, now)
    progress(
        SendProgress(
            report,
            remaining=found.remaining,
            held_elsewhere=found.held_elsewhere,
            retrying=found.retrying,
            next_at=found.next_at,
            done=done,
        )
    )
