"""Checking a template version the way sending would use it, with sample data for every
variant: Jinja syntax and runtime errors with their file and line, variables the email is
never given, loads outside the template set, MJML errors, and a warning when the HTML
passes Gmail's 102 KB clip."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from jinja2 import TemplateSyntaxError, meta, nodes
from sqlalchemy.orm import Session

from newsletter.errors import InvalidInput
from newsletter.mail.render import (
    GMAIL_CLIP_BYTES,
    LAYOUT,
    TemplateRenderError,
    describe_error,
    environment_for,
    render_batch,
    template_files,
    template_names,
)
from newsletter.mail.templates import samples
from newsletter.mail.templates.store import (
    PART_LABELS,
    check_name,
    file_name,
    label,
    published_parts,
    sources_of,
)

MAX_PART_CHARS = 200_000


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
            own = published_parts(session, email)
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
    sources = sources_of(session, name, parts, layout)
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
