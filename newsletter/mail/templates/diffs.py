"""Side-by-side comparison of two versions of a template."""

from __future__ import annotations

import difflib

from markupsafe import Markup

from newsletter.mail.render import LAYOUT
from newsletter.mail.templates.models import TemplateVersion
from newsletter.mail.templates.store import PART_LABELS


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
