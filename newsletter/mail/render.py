"""Email templates: Jinja (sandboxed) over MJML, compiled with mjml-python, CSS inlined.

A template lives in `templates/email/<name>/` as `subject.txt`, `body.mjml` and `body.txt`,
with the shared layout `_layout.mjml` and text footer `_footer.txt`. Those files are the
defaults: staff may publish their own versions (stored in the database, see
`newsletter.admin.templates`), and `render_email` then renders the published version,
falling back to the last version that rendered well if it fails.

Jinja runs in a `SandboxedEnvironment` with `StrictUndefined`: a template can reach only the
context it is given (no configuration, request, database or Python internals), and a
missing variable is an error rather than a blank in a sent email.
"""

from __future__ import annotations

import logging
import operator
import re
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from flask import current_app, has_app_context
from jinja2 import BaseLoader, StrictUndefined, TemplateNotFound, TemplateSyntaxError
from jinja2.sandbox import SandboxedEnvironment
from mjml import mjml2html
from premailer import Premailer

from newsletter.config import TEMPLATES_DIR

EMAIL_TEMPLATES = TEMPLATES_DIR / "email"
GMAIL_CLIP_BYTES = 102 * 1024
LAYOUT = "_layout"  # the shared layout: `_layout.mjml` and the text footer `_footer.txt`
PART_FILES = {"subject": "subject.txt", "mjml": "body.mjml", "text": "body.txt"}
LAYOUT_FILES = {"mjml": "_layout.mjml", "text": "_footer.txt"}
# Guards against a template that would hang or exhaust the renderer.
MAX_POWER_EXPONENT = 100
MAX_REPEAT_LENGTH = 1_000_000


class TemplateRenderError(Exception):
    """A template failed to render or compile; the message says where."""

    def __init__(self, message: str, *, part: str | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.part = part  # e.g. "edition/body.mjml", "_layout.mjml", "mjml"
        self.line = line


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class TemplateSources:
    """What one email renders from: its own three parts and the shared layout's two."""

    subject: str
    mjml: str
    text: str
    layout_mjml: str
    layout_text: str

    def files(self, name: str) -> dict[str, str]:
        return {
            f"{name}/subject.txt": self.subject,
            f"{name}/body.mjml": self.mjml,
            f"{name}/body.txt": self.text,
            LAYOUT_FILES["mjml"]: self.layout_mjml,
            LAYOUT_FILES["text"]: self.layout_text,
        }


def template_names() -> list[str]:
    """Every email there is a default for (a folder with a subject), sorted."""
    return sorted(
        p.name for p in EMAIL_TEMPLATES.iterdir() if p.is_dir() and (p / "subject.txt").is_file()
    )


def default_parts(name: str) -> dict[str, str]:
    """The files' text of one email (or of the layout, `LAYOUT`): {"subject", "mjml", "text"}."""
    if name == LAYOUT:
        return {
            "subject": "",
            **{k: (EMAIL_TEMPLATES / f).read_text("utf-8") for k, f in LAYOUT_FILES.items()},
        }
    if name not in template_names():
        raise KeyError(name)
    return {k: (EMAIL_TEMPLATES / name / f).read_text("utf-8") for k, f in PART_FILES.items()}


def default_sources(name: str) -> TemplateSources:
    own, layout = default_parts(name), default_parts(LAYOUT)
    return TemplateSources(own["subject"], own["mjml"], own["text"], layout["mjml"], layout["text"])


class _SourcesLoader(BaseLoader):
    """The given sources by file name; other partials from `templates/email/`."""

    def __init__(self, files: dict[str, str]) -> None:
        self.files = files

    def get_source(
        self, environment: Any, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        if template in self.files:
            return self.files[template], template, lambda: True
        path = EMAIL_TEMPLATES / template
        if ".." in template.split("/") or not path.is_file():
            raise TemplateNotFound(template)
        return path.read_text("utf-8"), template, lambda: True


class EmailSandbox(SandboxedEnvironment):
    """Jinja's sandbox, narrowed further for templates staff edit.

    - Attribute access is the sandbox's: nothing starting with "_" (so no `__class__`,
      `__globals__`, `__init__` walks), no function internals, `str.format` checked.
    - Only the globals a template needs (`range`, `dict`, `namespace`): `lipsum`, `cycler`
      and `joiner` are gone, so they cannot be used as a way in.
    - `**` and `*` are bounded, so `9**9**9` or `"x" * 10**10` fail instead of hanging.
    """

    intercepted_binops = frozenset({"**", "*"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name in ("lipsum", "cycler", "joiner"):
            self.globals.pop(name, None)

    def call_binop(self, context: Any, operator_: str, left: Any, right: Any) -> Any:
        if operator_ == "**":
            if isinstance(right, int | float) and abs(right) > MAX_POWER_EXPONENT:
                raise OverflowError(f"exponent over {MAX_POWER_EXPONENT} is not allowed")
            return operator.pow(left, right)
        if operator_ == "*":
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(seq, str | list | tuple)
                    and isinstance(count, int)
                    and len(seq) * count > MAX_REPEAT_LENGTH
                ):
                    raise OverflowError("that repetition would be too long")
            return operator.mul(left, right)
        return super().call_binop(context, operator_, left, right)


@lru_cache(maxsize=32)
def _environment(files: tuple[tuple[str, str], ...]) -> EmailSandbox:
    return EmailSandbox(
        loader=_SourcesLoader(dict(files)),
        undefined=StrictUndefined,
        # MJML is XML-ish: escape values in it; text parts and subjects stay as written.
        autoescape=lambda name: bool(name and name.endswith((".mjml", ".html"))),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        auto_reload=False,
    )


def environment_for(name: str, sources: TemplateSources) -> EmailSandbox:
    return _environment(tuple(sorted(sources.files(name).items())))


_MJML_POSITION = re.compile(r"at position (\d+):(\d+)")


def compile_mjml(source: str) -> str:
    try:
        html = mjml2html(source)
    except ValueError as exc:
        message, line = str(exc), None
        match = _MJML_POSITION.search(message)
        if match:
            line = source.count("\n", 0, int(match.group(1))) + 1
            message += f" (line {line} of the MJML after Jinja)"
        raise TemplateRenderError(f"MJML error: {message}", part="mjml", line=line) from exc
    return inline_css(html)


def inline_css(html: str) -> str:
    # Network off: a template must never make the renderer fetch a stylesheet.
    return Premailer(
        html,
        allow_network=False,
        allow_loading_external_files=False,
        keep_style_tags=True,  # keeps @media rules for mobile clients
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
    ).transform()


def _where(exc: BaseException, files: dict[str, str]) -> tuple[str | None, int | None]:
    """The template file and line an error was raised at, from Jinja's rewritten
    traceback (or the syntax error itself)."""
    if isinstance(exc, TemplateSyntaxError):
        return exc.filename or exc.name, exc.lineno
    found: tuple[str | None, int | None] = (None, None)
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename in files:
            found = (frame.filename, frame.lineno)
    return found


def describe_error(exc: BaseException, files: dict[str, str]) -> TemplateRenderError:
    part, line = _where(exc, files)
    kind = "syntax error" if isinstance(exc, TemplateSyntaxError) else "error"
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    where = f"{part}, line {line}" if part and line else (part or "template")
    return TemplateRenderError(f"{where}: {kind}: {text}", part=part, line=line)


def render_sources(name: str, sources: TemplateSources, context: dict[str, Any]) -> RenderedEmail:
    """Render one email from the given sources. Any failure of the template, whatever it
    is (syntax, undefined variable, a sandbox refusal, a division by zero), becomes a
    `TemplateRenderError` saying which part and line."""
    env = environment_for(name, sources)
    files = sources.files(name)
    try:
        subject = env.get_template(f"{name}/subject.txt").render(context)
        text = env.get_template(f"{name}/body.txt").render(context)
        mjml_source = env.get_template(f"{name}/body.mjml").render(context)
    except Exception as exc:  # a staff-edited template can raise anything
        raise describe_error(exc, files) from exc
    # A subject is one line: collapse whatever whitespace the template left.
    subject = " ".join(subject.split())
    try:
        html = compile_mjml(mjml_source)
    except TemplateRenderError:
        raise
    except Exception as exc:  # e.g. the CSS inliner choking on what a template made
        raise TemplateRenderError(f"{name}: the HTML could not be built: {exc}") from exc
    return RenderedEmail(subject=subject, text=text, html=html)


def render_email(name: str, context: dict[str, Any]) -> RenderedEmail:
    """Render an email from its published version (see `newsletter.admin.templates`), or
    from the files outside an app or before the staff area is set up."""
    if has_app_context():
        store = current_app.extensions.get("email_templates")
        if store is not None:
            return store.render(name, [context])[0]
    return render_sources(name, default_sources(name), context)
