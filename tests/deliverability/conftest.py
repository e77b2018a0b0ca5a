"""Deliverability fixtures: readers, an edition being sent and its deliveries made
directly, so a report can name them."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime

from flask import Flask

from newsletter.billing.entitlement import Plan
from newsletter.delivery.models import Delivery, DeliveryState
from newsletter.editions.models import Edition, EditionStatus
from newsletter.readers.models import Reader, ReaderStatus

NOW = datetime(2026, 12, 2, 12, 0, tzinfo=UTC)


@dataclass(frozen=True)
class Sent:
    """An edition being sent and, per reader address, its delivery id."""

    edition_id: int
    readers: dict[str, int]
    deliveries: dict[str, int]


def add_reader(
    app: Flask, email: str, *, status: ReaderStatus = ReaderStatus.CONFIRMED, staff: bool = False
) -> int:
    with app.extensions["db"].session() as session:
        reader = Reader(
            email=email,
            email_key=email.lower(),
            status=status,
            is_staff=staff,
            confirmed_at=NOW if status == ReaderStatus.CONFIRMED else None,
        )
        session.add(reader)
        session.flush()
        return reader.id


def send_edition(
    app: Flask,
    day: date,
    emails: list[str],
    *,
    extra: int = 0,
    status: EditionStatus = EditionStatus.SENDING,
) -> Sent:
    """An edition of `day` handed to the mail server for each of `emails` (readers made
    when missing) and for `extra` more made-up readers."""
    with app.extensions["db"].session() as session:
        edition = Edition(
            date=day,
            status=status,
            subject=f"Edition {day}",
            preheader="",
            word_count=100,
            reading_seconds=60,
            send_started_at=NOW,
        )
        session.add(edition)
        session.flush()
        everyone = [*emails, *(f"extra{i}.{day}@example.org" for i in range(extra))]
        known = {
            r.email_key: r for r in session.query(Reader).filter(Reader.email_key.in_(everyone))
        }
        readers = {}
        for email in everyone:
            reader = known.get(email.lower())
            if reader is None:
                reader = Reader(
                    email=email,
                    email_key=email.lower(),
                    status=ReaderStatus.CONFIRMED,
                    confirmed_at=NOW,
                )
                session.add(reader)
            readers[email] = reader
        session.flush()
        rows = {
            email: Delivery(
                edition_id=edition.id,
                reader_id=reader.id,
                plan=Plan.FREE,
                state=DeliveryState.SENT,
                attempts=1,
                sent_at=NOW,
                queued_at=NOW,
            )
            for email, reader in readers.items()
        }
        session.add_all(rows.values())
        session.flush()
        return Sent(
            edition.id,
            {e: readers[e].id for e in emails},
            {e: rows[e].id for e in emails},
        )
