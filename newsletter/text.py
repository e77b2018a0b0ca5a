"""Words that depend on a number: one helper, so no page says "1 readers"."""

from __future__ import annotations


def plural(n: int, singular: str, plural_form: str | None = None) -> str:
    """'1 reader', '2 readers', '0 stories' ('story' -> 'stories' by English rule)."""
    if n == 1:
        return f"{n} {singular}"
    if plural_form is None:
        if singular.endswith("y") and singular[-2:-1] not in "aeiou":
            plural_form = singular[:-1] + "ies"
        elif singular.endswith(("s", "x", "ch", "sh")):
            plural_form = singular + "es"
        else:
            plural_form = singular + "s"
    return f"{n:,} {plural_form}" if abs(n) >= 10000 else f"{n} {plural_form}"
