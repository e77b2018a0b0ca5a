"""Versions of the email templates staff edit. Version 1 of every email (and of the
shared layout) is its files; staff save new versions, publish any version (publishing an
older one is the roll-back). Versions are never changed once written."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.db import utcnow
from newsletter.errors import NotFound
from newsletter.mail.render import LAYOUT, default_parts
from newsletter.mail.templates.checks import Check, TemplateInvalid, check
from newsletter.mail.templates.models import EmailTemplate, TemplateVersion
from newsletter.mail.templates.store import editable_names, label
from newsletter.readers.models import Reader


def versions(session: Session, name: str) -> list[TemplateVersion]:
    return list(
        session.scalars(
            select(TemplateVersion)
            .where(TemplateVersion.name == name)
            .order_by(TemplateVersion.number.desc())
        )
    )


def get_version(session: Session, name: str, number: int) -> TemplateVersion:
    version = session.scalar(
        select(TemplateVersion).where(
            TemplateVersion.name == name, TemplateVersion.number == number
        )
    )
    if version is None:
        raise NotFound(f"{label(name)} has no version {number}.")
    return version


def state(session: Session, name: str) -> EmailTemplate:
    row = session.get(EmailTemplate, name)
    if row is None:
        row = EmailTemplate(name=name)
        session.add(row)
        session.flush()
    return row


def _next_number(session: Session, name: str) -> int:
    top = session.scalar(
        select(func.max(TemplateVersion.number)).where(TemplateVersion.name == name)
    )
    return (top or 0) + 1


def ensure_defaults(session: Session, names: Sequence[str] | None = None) -> None:
    """Version 1 of every email is its files. When the files change (a deploy), their
    new text is added as a new `default` version, so it shows in history and diffs."""
    for name in names if names is not None else editable_names():
        files = default_parts(name)
        latest_default = session.scalar(
            select(TemplateVersion)
            .where(TemplateVersion.name == name, TemplateVersion.source == "default")
            .order_by(TemplateVersion.number.desc())
            .limit(1)
        )
        if latest_default is None or latest_default.parts() != files:
            session.add(
                TemplateVersion(
                    name=name,
                    number=_next_number(session, name),
                    source="default",
                    note="The files in templates/email/",
                    **files,
                )
            )
            session.flush()
        state(session, name)


def save_version(
    session: Session, name: str, parts: dict[str, str], staff: Reader, note: str = ""
) -> tuple[TemplateVersion, Check]:
    """Check the parts and, when they have no errors, store them as a new version.
    Raises `TemplateInvalid` (with the check) when they have errors."""
    result = check(session, name, parts)
    if result.errors:
        raise TemplateInvalid(result)
    ensure_defaults(session, [name])  # the files stay version 1, whatever is saved first
    version = TemplateVersion(
        name=name,
        number=_next_number(session, name),
        subject="" if name == LAYOUT else " ".join(parts["subject"].split()),
        mjml=parts["mjml"],
        text=parts["text"],
        source="staff",
        note=note.strip()[:300],
        created_by_id=staff.id,
        created_at=utcnow(),
    )
    session.add(version)
    session.flush()
    return version, result


def publish(session: Session, version: TemplateVersion, staff: Reader) -> Check:
    """Make `version` the one sent from now on (the next edition included). Checked
    again first: the data a template is given may have changed since it was saved."""
    result = check(session, version.name, version.parts())
    if result.errors:
        raise TemplateInvalid(result)
    row = state(session, version.name)
    row.published = version  # the relationship, not just the id: read again at once
    row.published_at = utcnow()
    row.published_by_id = staff.id
    session.flush()
    return result
