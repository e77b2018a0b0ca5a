"""The published-template store every email is rendered from: which version of each
email (and of the shared layout, `_layout`) is published, rendering for a send with its
fallback, and the failures recorded for staff.

Sending renders the published version; if it fails, the version that last rendered in a
real send is used, then the files, and the failure is recorded (`TemplateFailure`) for
staff to see. A broken template never stops a send.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from sqlalchemy import select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from newsletter.db import Database, utcnow
from newsletter.errors import NotFound
from newsletter.mail.render import (
    LAYOUT,
    RenderedEmail,
    TemplateRenderError,
    TemplateSources,
    default_parts,
    default_sources,
    render_many,
    start_renderer,
    template_names,
)
from newsletter.mail.templates.models import EmailTemplate, TemplateFailure, TemplateVersion

LABELS = {
    "edition": "Daily edition",
    "confirm": "Confirm subscription",
    "welcome": "Welcome (after confirming)",
    "signin": "Sign-in link",
    "trial_will_end": "Trial ending",
    "payment_failed": "Payment failed",
    "erase": "Delete account: confirmation",
    LAYOUT: "Layout and footer (shared by every email)",
}
PART_LABELS = {"subject": "Subject", "mjml": "HTML body (MJML + Jinja)", "text": "Text body"}
log = logging.getLogger(__name__)


def editable_names() -> list[str]:
    return [*template_names(), LAYOUT]


def label(name: str) -> str:
    return LABELS.get(name, name.replace("_", " ").capitalize())


def file_name(name: str, part: str) -> str:
    if name == LAYOUT:
        return {"mjml": "_layout.mjml", "text": "_footer.txt"}.get(part, "")
    return f"{name}/" + {"subject": "subject.txt", "mjml": "body.mjml", "text": "body.txt"}[part]


def check_name(name: str) -> str:
    if name not in editable_names():
        raise NotFound("No such email template.")
    return name


def published_number(session: Session, name: str) -> int | None:
    row = session.get(EmailTemplate, name)
    return row.published.number if row is not None and row.published is not None else None


def sources_of(
    session: Session, name: str, parts: dict[str, str], layout: dict[str, str] | None
) -> TemplateSources:
    """`parts` of `name` with `layout`, or the published layout when None."""
    if layout is None:
        layout = published_parts(session, LAYOUT)
    return TemplateSources(
        parts.get("subject", ""), parts["mjml"], parts["text"], layout["mjml"], layout["text"]
    )


def published_parts(session: Session, name: str) -> dict[str, str]:
    row = session.get(EmailTemplate, name)
    if row is not None and row.published is not None:
        return row.published.parts()
    return default_parts(name)


# --- sending -----------------------------------------------------------------------------


def _parts_of(version: TemplateVersion | None, name: str) -> dict[str, str]:
    return version.parts() if version is not None else default_parts(name)


def _describe(version: TemplateVersion | None) -> str:
    return f"version {version.number}" if version is not None else "the default files"


def render_for_send(
    session: Session,
    name: str,
    contexts: Sequence[dict[str, Any]],
    *,
    edition_id: int | None = None,
    now: datetime | None = None,
) -> list[RenderedEmail]:
    """Render `name` once per context, from the published versions of the email and the
    layout. If that fails, every context is rendered from the last versions that rendered
    well (then from the files), so all of them use the same template, and the failure is
    recorded for staff. Raises only when the files fail too (a bug in the code)."""
    now = now or utcnow()
    email_row, layout_row = session.get(EmailTemplate, name), session.get(EmailTemplate, LAYOUT)
    published = (
        email_row.published if email_row else None,
        layout_row.published if layout_row else None,
    )
    last_good = (
        email_row.last_good if email_row else None,
        layout_row.last_good if layout_row else None,
    )
    candidates = [published]
    for option in (last_good, (None, None)):
        if option not in candidates:
            candidates.append(option)
    failure: TemplateRenderError | None = None
    for email_version, layout_version in candidates:
        own, layout = _parts_of(email_version, name), _parts_of(layout_version, LAYOUT)
        sources = TemplateSources(
            own["subject"], own["mjml"], own["text"], layout["mjml"], layout["text"]
        )
        try:
            rendered = render_many(name, sources, contexts)
        except TemplateRenderError as exc:
            failure = failure or exc
            continue
        if (email_version, layout_version) == published:
            for row, version in ((email_row, email_version), (layout_row, layout_version)):
                if row is not None and version is not None and row.last_good_id != version.id:
                    row.last_good = version
        elif failure is not None:
            _record_failure(
                session,
                name,
                failure,
                published,
                (email_version, layout_version),
                edition_id,
                now,
            )
        session.flush()
        return rendered
    raise failure or TemplateRenderError(f"{name}: no template to render")


def _record_failure(
    session: Session,
    name: str,
    error: TemplateRenderError,
    published: tuple[TemplateVersion | None, TemplateVersion | None],
    used: tuple[TemplateVersion | None, TemplateVersion | None],
    edition_id: int | None,
    now: datetime,
) -> None:
    in_layout = bool(error.part and error.part.startswith(("_layout", "_footer")))
    if in_layout or published[0] is None:
        at_fault, failed, instead = LAYOUT, published[1], used[1]
    else:
        at_fault, failed, instead = name, published[0], used[0]
    message = f"{error.message} (sending '{label(name)}'; {_describe(instead)} was used instead)"
    recent = select(TemplateFailure.id).where(
        TemplateFailure.name == at_fault,
        TemplateFailure.failed_version_id == (failed.id if failed else None),
        TemplateFailure.message == message,
    )
    if edition_id is not None:
        recent = recent.where(TemplateFailure.edition_id == edition_id)
    else:  # transactional mail: one row an hour per distinct failure is enough
        recent = recent.where(TemplateFailure.at > now - timedelta(hours=1))
    if session.scalar(recent.limit(1)) is not None:
        return
    session.add(
        TemplateFailure(
            name=at_fault,
            failed_version_id=failed.id if failed else None,
            used_version_id=instead.id if instead else None,
            edition_id=edition_id,
            message=message,
            at=now,
        )
    )


def failures(session: Session, name: str | None = None, limit: int = 20) -> list[TemplateFailure]:
    query = select(TemplateFailure).order_by(TemplateFailure.at.desc(), TemplateFailure.id.desc())
    if name is not None:
        query = query.where(TemplateFailure.name == name)
    return list(session.scalars(query.limit(limit)))


def edition_failures(session: Session, edition_id: int) -> list[TemplateFailure]:
    """The template failures recorded while rendering an edition, newest first."""
    query = select(TemplateFailure).where(TemplateFailure.edition_id == edition_id)
    return list(session.scalars(query.order_by(TemplateFailure.id.desc())))


class TemplateStore:
    """`render_email`'s source of published templates (`app.extensions["email_templates"]`):
    renders in a transaction of its own, for mail sent outside any other (after a
    request commits, from a job)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def render(self, name: str, contexts: Sequence[dict[str, Any]]) -> list[RenderedEmail]:
        try:
            with self.db.session() as session:
                return render_for_send(session, name, contexts)
        except SQLAlchemyError:
            # The database cannot say which version is published (down, or not migrated
            # yet): an email from the files beats no email.
            log.exception("published templates unavailable; rendering %s from the files", name)
            return render_many(name, default_sources(name), contexts)


def install(app: Flask, samples: Callable[[], Mapping[str, Mapping[str, dict[str, Any]]]]) -> None:
    """Make every email use the published templates, and start the renderer. `samples`
    gives each email's sample contexts by variant (the renderer warms itself on them)."""
    app.extensions["email_templates"] = TemplateStore(app.extensions["db"])
    # The renderer's zygote loads while the app finishes starting.
    with app.app_context():
        warm = [(name, list(variants.values())) for name, variants in samples().items()]
    start_renderer(warm)
