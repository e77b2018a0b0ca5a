"""Per-reader messages for an edition: fill the holes of the pre-built variant bytes.

This is the hot path of a send: no Jinja, no MJML, no CSS inlining, no MIME encoding per
reader, just a few HMACs and a byte join (see `bench/render.py`). Everything that is the
same for every reader of the edition (templates, hole names, HMAC keys) is worked out
once in `EditionMessages.__init__`; `render` only does what depends on the reader.
The reader's values themselves (free stories left, trial days left) are read from the
database once per batch by `recipient_values`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from flask import Flask
from sqlalchemy.orm import Session

from newsletter.billing.entitlement import Plan, entitlements_of, trial_days_left
from newsletter.editions.models import Edition
from newsletter.editions.rendering import CannotCompose, link_hole
from newsletter.mail.message import MessageTemplate, compose, feedback_id
from newsletter.tokens import LinkSigner, MessageIds, UnsubscribeSigner
from newsletter.tracking.meter import free_left_for


@dataclass(frozen=True)
class Recipient:
    reader_id: int
    email: str
    plan: Plan
    free_left: int = 0
    trial_days_left: int = 0


class RecipientRow(NamedTuple):
    """A reader about to get the `plan` variant of an edition."""

    id: int
    email: str
    plan: Plan
    timezone: str  # the meter counts the reader's own calendar month


def recipient_values(
    session: Session, rows: Sequence[RecipientRow], now: datetime
) -> dict[int, Recipient]:
    """Each reader's values for their variant's holes, for a batch of readers: the one
    place they are worked out, for the send loop and the staff area's test send alike.

    - free variant: the free stories the reader has left this month, from the meter
      (`free_left_for`, one query for the batch);
    - trial variant: the days left of the reader's trial, from their subscription's
      trial end (`entitlements_of`, one query for the batch), rounded as
      `trial_days_left` says: up to whole days, at least 1. A reader queued on a trial
      who is no longer on one by their turn (it converted or ended) reads 1;
    - paid variant: nothing.

    The variant is the plan the row was queued with, so only those readers are asked
    about; the other value is left at 0 and never shown.
    """
    free = [row for row in rows if row.plan == Plan.FREE]
    # The meter reads `.id` and `.timezone`, which the rows have as a Reader does.
    free_left = free_left_for(session, free, now) if free else {}  # type: ignore[arg-type]
    trial = [row.id for row in rows if row.plan == Plan.TRIAL]
    trial_ends = entitlements_of(session, trial, now) if trial else {}
    return {
        row.id: Recipient(
            row.id,
            row.email,
            row.plan,
            free_left=free_left.get(row.id, 0),
            trial_days_left=(
                trial_days_left(trial_ends[row.id].trial_end, now) if row.id in trial_ends else 0
            ),
        )
        for row in rows
    }


class EditionMessages:
    """Builds each reader's message bytes for one edition. Make one per send (in an app
    context); it holds the composed templates for every variant.

    Raises `CannotCompose` when the edition has no messages to build: it was never
    rendered (`compose_error` says why), a plan's variant is missing, or a variant has a
    hole this class does not fill. Checked once here, so a send never fails mid-way on
    the first reader of a variant."""

    def __init__(self, app: Flask, edition: Edition) -> None:
        cfg = app.config
        self.edition_id = edition.id
        self.mail_from: str = cfg["MAIL_FROM"]
        self.secret: str = cfg["SECRET_KEY"]
        self.base_url: str = cfg["BASE_URL"]
        self.link_base = self.base_url + "/r/"
        self.story_ids = [es.story_id for es in edition.stories]
        self.signer = LinkSigner(self.secret)
        self.unsubscribe_base = f"{self.base_url}/unsubscribe/"  # as `unsubscribe_url_for`
        self.unsubscribe = UnsubscribeSigner(self.secret)
        # Stable per edition and reader: a message resent after a crash is the same message.
        self.message_ids = MessageIds(self.secret, self.mail_from, "e", self.edition_id, "r")
        # (hole name, story id) for each story link, named once rather than per reader.
        self.links = [(link_hole(story_id), story_id) for story_id in self.story_ids]
        if edition.compose_error is not None:
            raise CannotCompose(edition.compose_error)
        self.templates: dict[Plan, MessageTemplate] = {
            v.plan: compose(
                mail_from=self.mail_from,
                subject=v.subject,
                text=v.text_body,
                html=v.html_body,
                list_id=cfg["LIST_ID"],
                feedback_id=feedback_id(
                    f"e{edition.id}", v.plan.value, cfg["LIST_ID"], cfg["FEEDBACK_SENDER_ID"]
                ),
            )
            for v in edition.variants
        }
        missing = [plan.value for plan in Plan if plan not in self.templates]
        if missing:
            raise CannotCompose(f"the edition has no {', '.join(missing)} variant: render it again")
        fills = {"to", "date", "message_id", "free_left", "trial_days_left", "unsubscribe_url"}
        fills.update(name for name, _ in self.links)
        for plan, template in self.templates.items():
            unknown = template.holes - fills
            if unknown:
                raise CannotCompose(
                    f"the {plan.value} variant has holes no reader value fills "
                    f"({', '.join(sorted(unknown))}): render it again"
                )

    def unsubscribe_url(self, reader_id: int) -> str:
        return self.unsubscribe_base + self.unsubscribe.sign(reader_id)

    def message_id(self, reader_id: int) -> str:
        return self.message_ids.make(reader_id)

    def render(self, recipient: Recipient, date_header: str) -> tuple[str, bytes]:
        """(Message-ID, message bytes) for one reader."""
        reader_id = recipient.reader_id
        message_id = self.message_ids.make(reader_id)
        values = {
            "to": recipient.email,
            "date": date_header,
            "message_id": message_id,
            "free_left": str(recipient.free_left),
            "trial_days_left": str(recipient.trial_days_left),
            "unsubscribe_url": self.unsubscribe_url(reader_id),
        }
        sign, edition_id, link_base = self.signer.sign, self.edition_id, self.link_base
        for name, story_id in self.links:
            values[name] = link_base + sign(reader_id, edition_id, story_id)
        return message_id, self.templates[recipient.plan].render(values)
