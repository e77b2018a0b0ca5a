"""Staff use cases: the audit log, edition control and reader care. They flush; the
request commits."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flask import Flask, current_app
from sqlalchemy import func, select
from sqlalchemy.orm import Session, selectinload

from newsletter.admin.models import AuditEntry
from newsletter.billing.entitlement import Plan, plan_of
from newsletter.db import utcnow
from newsletter.delivery.models import Delivery, DeliveryState
from newsletter.editions.models import Edition, EditionStatus
from newsletter.editions.personalize import EditionMessages, RecipientRow, recipient_values
from newsletter.editions.rendering import link_hole
from newsletter.errors import InvalidInput, NotFound
from newsletter.mail.message import Body, compose, fill_body, now_header
from newsletter.mail.render import RenderedEmail
from newsletter.mail.sending import send_bytes
from newsletter.readers import suppression
from newsletter.readers.models import Reader, ReaderStatus
from newsletter.readers.services import send_confirmation
from newsletter.stories.models import Story
from newsletter.tokens import new_message_id
from newsletter.tracking.models import Click

# --- audit -------------------------------------------------------------------------------


def audit(session: Session, staff: Reader, action: str, target: str = "", detail: str = "") -> None:
    session.add(
        AuditEntry(
            staff_id=staff.id,
            staff_email=staff.email,
            action=action,
            target=target[:200],
            detail=detail,
            at=utcnow(),
        )
    )
    session.flush()


def audit_as(session: Session, actor: str, action: str, target: str = "", detail: str = "") -> None:
    """An entry for an action no staff member took in the staff area: the command line,
    or a reader acting on their own account (`actor` says which)."""
    session.add(
        AuditEntry(
            staff_id=None,
            staff_email=actor,
            action=action,
            target=target[:200],
            detail=detail,
            at=utcnow(),
        )
    )
    session.flush()


def audit_entries(
    session: Session, limit: int = 200, before: int | None = None
) -> list[AuditEntry]:
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if before is not None:
        query = query.where(AuditEntry.id < before)
    return list(session.scalars(query))


# --- editions ----------------------------------------------------------------------------


def recent_editions(session: Session, limit: int = 30) -> list[Edition]:
    return list(session.scalars(select(Edition).order_by(Edition.date.desc()).limit(limit)))


def next_edition(session: Session, now: datetime | None = None) -> Edition | None:
    """The next edition to go out: the earliest not fully sent, from yesterday on (UTC;
    for readers far west it is still yesterday)."""
    since = (now or utcnow()).date() - timedelta(days=1)
    return session.scalar(
        select(Edition)
        .where(Edition.status != EditionStatus.SENT, Edition.date >= since)
        .order_by(Edition.date)
        .limit(1)
    )


@dataclass(frozen=True)
class Progress:
    edition_id: int
    status: str
    paused: bool
    queued: int
    sending: int
    sent: int
    failed: int
    suppressed: int

    @property
    def total(self) -> int:
        return self.queued + self.sending + self.sent + self.failed + self.suppressed

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.suppressed

    def as_json(self) -> dict[str, object]:
        return {
            "edition_id": self.edition_id,
            "status": self.status,
            "paused": self.paused,
            "queued": self.queued,
            "sending": self.sending,
            "sent": self.sent,
            "failed": self.failed,
            "suppressed": self.suppressed,
            "total": self.total,
            "done": self.done,
        }


def progress(session: Session, edition_ids: list[int]) -> dict[int, Progress]:
    """Delivery counts by state for each edition, in one query."""
    counts: dict[int, dict[str, int]] = {i: {} for i in edition_ids}
    for edition_id, state, n in session.execute(
        select(Delivery.edition_id, Delivery.state, func.count())
        .where(Delivery.edition_id.in_(edition_ids))
        .group_by(Delivery.edition_id, Delivery.state)
    ):
        counts[edition_id][DeliveryState(state).value] = n
    found = {e.id: e for e in session.scalars(select(Edition).where(Edition.id.in_(edition_ids)))}
    return {
        i: Progress(
            i,
            found[i].status.value,
            found[i].paused,
            **{s.value: counts[i].get(s.value, 0) for s in DeliveryState},
        )
        for i in edition_ids
        if i in found
    }


def set_paused(session: Session, edition: Edition, paused: bool) -> None:
    if paused and edition.status != EditionStatus.SENDING:
        raise InvalidInput("Only an edition that is being sent can be paused.")
    edition.paused = paused
    session.flush()


# --- readers -----------------------------------------------------------------------------


def search_readers(session: Session, query: str, limit: int = 50) -> list[Reader]:
    q = query.strip().lower()
    stmt = select(Reader).order_by(Reader.email_key).limit(limit)
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(Reader.email_key.like(f"%{escaped}%", escape="\\"))
    return list(session.scalars(stmt))


@dataclass(frozen=True)
class ReaderFacts:
    reader: Reader
    plan: Plan
    free_left: int
    free_per_month: int
    deliveries: list[Delivery]
    clicks: list[tuple[Click, str]]  # click and story title


def reader_facts(session: Session, reader_id: int, now: datetime | None = None) -> ReaderFacts:
    from newsletter.tracking.meter import free_stories_left

    reader = session.get(Reader, reader_id)
    if reader is None:
        raise NotFound("No such reader.")
    now = now or utcnow()
    deliveries = list(
        session.scalars(
            select(Delivery)
            .where(Delivery.reader_id == reader.id)
            .options(selectinload(Delivery.edition))
            .order_by(Delivery.id.desc())
            .limit(30)
        )
    )
    clicks = [
        (click, title)
        for click, title in session.execute(
            select(Click, Story.title)
            .join(Story, Story.id == Click.story_id)
            .where(Click.reader_id == reader.id)
            .order_by(Click.id.desc())
            .limit(30)
        )
    ]
    return ReaderFacts(
        reader,
        plan_of(session, reader.id, now),
        free_stories_left(session, reader, now),
        int(current_app.config["FREE_STORIES_PER_MONTH"]),
        deliveries,
        clicks,
    )


def resend_confirmation(session: Session, reader: Reader, now: datetime | None = None) -> bool:
    reason = suppression.suppression_of(reader)
    if reason is not None:
        raise InvalidInput(
            f"This address is suppressed ({reason.value}): lift the suppression first."
        )
    if reader.status != ReaderStatus.PENDING:
        raise InvalidInput("Only a reader waiting for confirmation can be sent a confirmation.")
    return send_confirmation(session, reader, now or utcnow())


def suppress(session: Session, reader: Reader, staff: Reader, reason: str) -> None:
    """Stop every email to the reader (status `bounced`, as a hard bounce does)."""
    suppression.suppress_by_staff(session, reader, staff.email, reason)


def unsuppress(session: Session, reader: Reader) -> ReaderStatus:
    """Lift a suppression of any reason (bounce, complaint, staff); see
    `newsletter.readers.suppression.lift_suppression` for where the reader goes."""
    return suppression.lift_suppression(session, reader)


# --- test sends --------------------------------------------------------------------------


def send_rendered_test(app: Flask, to: str, rendered: RenderedEmail, *, list_mail: bool) -> None:
    """A test of a template version through the real mail path (compose, transport),
    marked "[Test]" in the subject. Raises `DeliveryError` when the server refuses."""
    cfg = app.config
    template = compose(
        mail_from=cfg["MAIL_FROM"],
        subject=f"[Test] {rendered.subject}",
        text=rendered.text,
        html=rendered.html,
        list_id=cfg["LIST_ID"] if list_mail else None,
    )
    values = {"to": to, "date": now_header(), "message_id": new_message_id(cfg["MAIL_FROM"])}
    if list_mail:
        values["unsubscribe_url"] = cfg["BASE_URL"] + "/account"
    send_bytes(app, to, template.render(values))


def send_edition_test(
    session: Session, app: Flask, edition: Edition, staff: Reader, plan: Plan
) -> None:
    """The edition exactly as a reader on `plan` gets it (the same pre-built variant and
    per-reader holes, filled by the send loop's `recipient_values` with the staff
    member's own values: their free stories left, their trial's days left or 1), to the
    staff member's own address."""
    messages = EditionMessages(app, edition)
    row = RecipientRow(staff.id, staff.email, plan, staff.timezone)
    recipient = recipient_values(session, [row], utcnow())[staff.id]
    _, data = messages.render(recipient, now_header())
    send_bytes(app, staff.email, data)


def fill_preview_holes(edition: Edition, body: Body, base_url: str, free: int, trial: int) -> str:
    """A stored variant's body with its per-reader holes filled with stand-ins, for
    previewing."""
    values = {
        "free_left": str(free),
        "trial_days_left": str(trial),
        "unsubscribe_url": f"{base_url}/account",
    }
    for es in edition.stories:
        values[link_hole(es.story_id)] = f"{base_url}/stories/{es.story.slug}"
    return fill_body(body, values)
