"""Email templates: Jinja (sandboxed) over MJML, compiled with mjml-python, CSS inlined.

A template lives in `templates/email/<name>/` as `subject.txt`, `body.mjml` and `body.txt`.
Jinja runs in a `SandboxedEnvironment` with `StrictUndefined`: a template can reach only the
context it is given, and a missing variable is an error rather than a blank in a sent email.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import FileSystemLoader, StrictUndefined, TemplateError, select_autoescape
from jinja2.sandbox import SandboxedEnvironment
from mjml import mjml2html
from premailer import Premailer

from newsletter.config import TEMPLATES_DIR

EMAIL_TEMPLATES = TEMPLATES_DIR / "email"
GMAIL_CLIP_BYTES = 102 * 1024


class TemplateRenderError(Exception):
    """A template failed to render or compile; the message says where."""


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    text: str
    html: str


@lru_cache(maxsize=1)
def email_environment() -> SandboxedEnvironment:
    return SandboxedEnvironment(
        loader=FileSystemLoader(str(EMAIL_TEMPLATES)),
        undefined=StrictUndefined,
        # MJML is XML-ish: escape values in it; text parts and subjects stay as written.
        autoescape=select_autoescape(enabled_extensions=("mjml", "html"), default=False),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def compile_mjml(source: str) -> str:
    try:
        html = mjml2html(source)
    except ValueError as exc:
        raise TemplateRenderError(f"MJML error: {exc}") from exc
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


def render_email(name: str, context: dict[str, Any]) -> RenderedEmail:
    env = email_environment()
    try:
        subject = env.get_template(f"{name}/subject.txt").render(context)
        text = env.get_template(f"{name}/body.txt").render(context)
        mjml_source = env.get_template(f"{name}/body.mjml").render(context)
    except TemplateError as exc:
        raise TemplateRenderError(f"{name}: {exc}") from exc
    # A subject is one line: collapse whatever whitespace the template left.
    subject = " ".join(subject.split())
    return RenderedEmail(subject=subject, text=text, html=compile_mjml(mjml_source))
