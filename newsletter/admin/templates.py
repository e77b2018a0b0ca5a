"""Email templates staff edit: versions, checks, publishing, diffs and the send-time
fallback.

- Version 1 of every email (and of the shared layout, `_layout`) is its files; staff
  save new versions, publish any version (publishing an older one is the roll-back),
  and compare any two.
- Saving checks a version the way sending would use it, with sample data for every
  variant: Jinja syntax and runtime errors with their file and line, variables the
  email is never given, MJML errors, and a warning when the HTML passes Gmail's 102 KB
  clip.
- Sending renders the published version; if it fails, the version that last rendered
  in a real send is used, then the files, and the failure is recorded (`TemplateFailure`)
  for staff to see. A broken template never stops a send.
"""

from __future__ import annotations

import difflib
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from flask import Flask
from jinja2 import TemplateSyntaxError, meta, nodes
from markupsafe import Markup
from sqlalchemy import func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from newsletter.admin import samples
from newsletter.admin.models import EmailTemplate, TemplateFailure, TemplateVersion
from newsletter.db import Database, utcnow
from newsletter.errors import InvalidInput, NotFound
from newsletter.mail.render import (
    GMAIL_CLIP_BYTES,
    LAYOUT,
    RenderedEmail,
    TemplateRenderError,
    TemplateSources,
    default_parts,
    default_sources,
    describe_error,
    environment_for,
    render_batch,
    render_many,
    start_renderer,
    template_files,
    template_names,
)
from newsletter.readers.models import Reader

LABELS = {
    "edition": "Daily edition",
    "confirm": "Confirm subscription",
    "signin": "Sign-in link",
    "trial_will_end": "Trial ending",
    "payment_failed": "Payment failed",
    LAYOUT: "Layout and footer (shared by every email)",
}
PART_LABELS = {"subject": "Subject", "mjml": "HTML body (MJML + Jinja)", "text": "Text body"}
MAX_PART_CHARS = 200_000
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


# --- versions ----------------------------------------------------------------------------


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


def published_number(session: Session, name: str) -> int | None:
    row = session.get(EmailTemplate, name)
    return row.published.number if row is not None and row.published is not None else None


# --- checking ----------------------------------------------------------------------------


class TemplateInvalid(InvalidInput):
    def __init__(self, result: Check) -> None:
        super().__init__("This version has errors: " + "; ".join(result.errors))
        self.result = result


@dataclass
class Check:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    html_bytes: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


KNOWN_MJML_TAGS = frozenset(
    {
        "mjml",
        "mj-head",
        "mj-body",
        "mj-attributes",
        "mj-all",
        "mj-class",
        "mj-breakpoint",
        "mj-font",
        "mj-html-attributes",
        "mj-html-attribute",
        "mj-selector",
        "mj-preview",
        "mj-style",
        "mj-title",
        "mj-raw",
        "mj-accordion",
        "mj-accordion-element",
        "mj-accordion-title",
        "mj-accordion-text",
        "mj-button",
        "mj-carousel",
        "mj-carousel-image",
        "mj-column",
        "mj-divider",
        "mj-group",
        "mj-hero",
        "mj-image",
        "mj-navbar",
        "mj-navbar-link",
        "mj-section",
        "mj-social",
        "mj-social-element",
        "mj-spacer",
        "mj-table",
        "mj-text",
        "mj-wrapper",
        "mj-include",
        "",
    }
)
_TAG = re.compile(r"<(/?)(mjml|mj-[a-z-]+)\b[^>]*?(/?)>", re.IGNORECASE)


def lint_mjml(source: str) -> list[tuple[int, str, str]]:
    """Unknown and unbalanced MJML tags, with their line in `source` (MRML accepts some
    of these silently and produces a broken email): (line, problem, the tag as written)."""
    problems: list[tuple[int, str, str]] = []
    stack: list[tuple[str, int, str]] = []
    for match in _TAG.finditer(source):
        closing, tag, selfclose = match.group(1), match.group(2).lower(), match.group(3)
        line = source.count("\n", 0, match.start()) + 1
        written = match.group(0)
        if tag not in KNOWN_MJML_TAGS:
            problems.append((line, f"unknown MJML tag <{closing}{tag}>", written))
            continue
        if selfclose:
            continue
        if not closing:
            stack.append((tag, line, written))
            continue
        if stack and stack[-1][0] == tag:
            stack.pop()
        elif any(t == tag for t, _, _ in stack):
            while stack and stack[-1][0] != tag:
                open_tag, open_line, open_written = stack.pop()
                problems.append((open_line, f"<{open_tag}> is never closed", open_written))
            stack.pop()
        else:
            problems.append((line, f"</{tag}> closes a tag that is not open", written))
    for open_tag, open_line, open_written in stack:
        problems.append((open_line, f"<{open_tag}> is never closed", open_written))
    return problems


def _locate(snippet: str, sources: dict[str, str]) -> str:
    """Where a piece of rendered MJML comes from in the template files, when it can be
    found there as is."""
    for file, text in sources.items():
        at = text.find(snippet)
        if at >= 0:
            return f"{file}, line {text.count(chr(10), 0, at) + 1}"
    return ""


def _sources(session: Session, name: str, parts: dict[str, str], layout: dict[str, str] | None):
    if layout is None:
        layout = _published_parts(session, LAYOUT)
    return TemplateSources(
        parts.get("subject", ""), parts["mjml"], parts["text"], layout["mjml"], layout["text"]
    )


def _published_parts(session: Session, name: str) -> dict[str, str]:
    row = session.get(EmailTemplate, name)
    if row is not None and row.published is not None:
        return row.published.parts()
    return default_parts(name)


def check(session: Session, name: str, parts: dict[str, str]) -> Check:
    """Everything that would go wrong sending these parts, found before they are used."""
    check_name(name)
    result = Check()
    for part in ("subject", "mjml", "text") if name != LAYOUT else ("mjml", "text"):
        if len(parts.get(part, "")) > MAX_PART_CHARS:
            result.errors.append(f"{PART_LABELS[part]} is over {MAX_PART_CHARS} characters.")
    if result.errors:
        return result
    if name == LAYOUT:
        # The layout is checked inside every email, each as it is published now.
        for email in template_names():
            own = _published_parts(session, email)
            sub = _check_email(session, email, own, layout=parts, lint_layout=True)
            result.errors += [f"With {label(email)}: {e}" for e in sub.errors]
            result.warnings += [f"With {label(email)}: {w}" for w in sub.warnings]
            result.html_bytes = max(result.html_bytes, sub.html_bytes)
        result.errors = list(dict.fromkeys(result.errors))
        result.warnings = list(dict.fromkeys(result.warnings))
        return result
    return _check_email(session, name, parts, layout=None)


def _check_email(
    session: Session,
    name: str,
    parts: dict[str, str],
    *,
    layout: dict[str, str] | None,
    lint_layout: bool = False,
) -> Check:
    result = Check()
    sources = _sources(session, name, parts, layout)
    files = sources.files(name)
    env = environment_for(name, sources)
    checked = (
        [file_name(LAYOUT, "mjml"), file_name(LAYOUT, "text")]
        if lint_layout
        else [file_name(name, p) for p in ("subject", "mjml", "text")]
    )
    known = samples.known_variables(LAYOUT if lint_layout else name) | set(env.globals)
    loadable = set(template_files(name, sources))
    for file in checked:
        try:
            ast = env.parse(files[file], name=file, filename=file)
        except TemplateSyntaxError as exc:
            result.errors.append(describe_error(exc, files).message)
            continue
        except RecursionError:  # nesting deeper than the parser goes
            result.errors.append(f"{file}: error: the template is nested too deeply")
            continue
        result.errors += reference_errors(file, ast, loadable, own=sorted(files))
        for var in sorted(meta.find_undeclared_variables(ast) - known):
            line = _first_use(files[file], var)
            where = f"{file}, line {line}" if line else file
            result.errors.append(
                f"{where}: undefined variable '{var}': this email is never given it "
                f"(it has: {', '.join(sorted(known - set(env.globals)))})"
            )
    if result.errors:
        return result
    variants = samples.variants(name)
    try:
        renderings = render_batch(name, sources, list(variants.values()), keep_going=True)
    except TemplateRenderError as exc:  # the batch was stopped: a limit, whichever variant
        result.errors.append(exc.message)
        return result
    for variant, rendering in zip(variants, renderings, strict=False):
        error = rendering.error
        if rendering.mjml is None:  # Jinja failed
            if error is not None:
                result.errors.append(error.message + _variant_note(name, variant))
            continue
        for line, problem, written in lint_mjml(rendering.mjml):
            where = _locate(written, files) or f"line {line} of the MJML after Jinja"
            result.errors.append(f"MJML error: {problem} ({where})")
        if error is not None or rendering.html is None:
            message = error.message if error is not None else f"{name}: no HTML was built"
            result.errors.append(message + _variant_note(name, variant))
            continue
        size = len(rendering.html.encode("utf-8"))
        result.html_bytes = max(result.html_bytes, size)
        if size > GMAIL_CLIP_BYTES:
            result.warnings.append(
                f"The HTML is {size / 1024:.0f} KB{_variant_note(name, variant)}: Gmail "
                f"clips messages over {GMAIL_CLIP_BYTES // 1024} KB and hides the rest "
                "(including the unsubscribe link) behind 'View entire message'."
            )
    result.errors = list(dict.fromkeys(result.errors))
    return result


_LOADS = {
    nodes.Extends: "{% extends %}",
    nodes.Include: "{% include %}",
    nodes.Import: "{% import %}",
    nodes.FromImport: "{% from … import %}",
}


def reference_errors(
    file: str, ast: nodes.Template, loadable: set[str], *, own: Sequence[str]
) -> list[str]:
    """Every `extends`, `include`, `import` and `from … import` in `ast` that names
    anything but a template of the set, or a name computed when sending (which the check
    cannot see): "file, line N: …"."""
    errors = []
    for node in ast.find_all(tuple(_LOADS)):
        tag = _LOADS[type(node)]
        target = node.template  # type: ignore[attr-defined]
        items = target.items if isinstance(target, nodes.Tuple | nodes.List) else [target]
        for item in items:
            if not isinstance(item, nodes.Const) or not isinstance(item.value, str):
                errors.append(
                    f"{file}, line {node.lineno}: {tag} must name a template in quotes, "
                    f"one of: {', '.join(own)}"
                )
            elif item.value not in loadable:
                errors.append(
                    f"{file}, line {node.lineno}: {tag} of {item.value[:80]!r}: not one of "
                    f"this email's templates ({', '.join(own)})"
                )
    return errors


def _variant_note(name: str, variant: str) -> str:
    return "" if variant == "default" else f" (with the sample for {variant})"


def _first_use(text: str, var: str) -> int | None:
    match = re.search(rf"\b{re.escape(var)}\b", text)
    return text.count("\n", 0, match.start()) + 1 if match else None


# --- preview -----------------------------------------------------------------------------


def preview(
    session: Session, name: str, parts: dict[str, str], variant: str | None = None
) -> RenderedEmail:
    """The email rendered with sample data (the layout: inside the edition)."""
    check_name(name)
    if name == LAYOUT:
        email, own, layout = "edition", _published_parts(session, "edition"), parts
    else:
        email, own, layout = name, parts, None
    options = samples.variants(email)
    context = options.get(variant or "", next(iter(options.values())))
    sources = _sources(session, email, own, layout)
    # The desktop, mobile and text frames ask for the same rendering at once: render it
    # once, and keep its outcome (a template that breaks a limit is not run three times).
    key = (email, sources, json.dumps(context, sort_keys=True, default=str))
    with _preview_lock:
        pending = _previews.get(key)
        mine = pending is None
        if pending is None:
            pending = _previews[key] = Future()
            while len(_previews) > 32:
                _previews.popitem(last=False)
        else:
            _previews.move_to_end(key)
    if mine:
        try:
            outcome: RenderedEmail | TemplateRenderError = render_many(email, sources, [context])[0]
        except TemplateRenderError as exc:
            outcome = exc
        except BaseException as exc:  # whoever waits on it must not wait forever
            pending.set_exception(exc)
            raise
        pending.set_result(outcome)
        if isinstance(outcome, TemplateRenderError):  # shared with the frames asking now only
            with _preview_lock:
                _previews.pop(key, None)
    else:
        outcome = pending.result()
    if isinstance(outcome, TemplateRenderError):
        raise outcome
    return outcome


_previews: OrderedDict[
    tuple[str, TemplateSources, str], Future[RenderedEmail | TemplateRenderError]
] = OrderedDict()
_preview_lock = threading.Lock()


def variant_names(name: str) -> list[str]:
    return list(samples.variants("edition" if name == LAYOUT else name))


# --- diffs -------------------------------------------------------------------------------


def diff(a: TemplateVersion, b: TemplateVersion) -> list[tuple[str, Markup, bool]]:
    """Per part: (label, an HTML side-by-side table of the changes, whether it changed)."""
    out = []
    differ = difflib.HtmlDiff(tabsize=2, wrapcolumn=70)
    for part in ("subject", "mjml", "text"):
        if a.name == LAYOUT and part == "subject":
            continue
        old, new = a.parts()[part].splitlines(), b.parts()[part].splitlines()
        changed = old != new
        table = differ.make_table(
            old, new, f"version {a.number}", f"version {b.number}", context=True, numlines=3
        )
        label_ = (
            PART_LABELS[part]
            if a.name != LAYOUT
            else {"mjml": "Layout (MJML)", "text": "Text footer"}[part]
        )
        out.append((label_, Markup(table), changed))  # noqa: S704 (difflib escapes)
    return out


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


def install(app: Flask) -> None:
    app.extensions["email_templates"] = TemplateStore(app.extensions["db"])
    # The renderer's zygote loads while the app finishes starting, and warms itself on
    # the sample emails.
    with app.app_context():
        warm = [(name, list(samples.variants(name).values())) for name in template_names()]
    start_renderer(warm)
