"""Small import documents for the stories tests, in the JSON format of the importer."""

from __future__ import annotations

from typing import Any

OUTLETS = [
    {"slug": "lefty", "name": "Lefty Times", "bias": "left", "factuality": "high"},
    {"slug": "middle", "name": "Middle Wire", "bias": "center", "url": "https://middle.example/"},
    {"slug": "righty", "name": "Righty Post", "bias": "lean_right", "factuality": "mixed"},
]


def article(n: int, outlet: str | dict[str, Any] = "middle", **fields: Any) -> dict[str, Any]:
    return {
        "outlet": outlet,
        "url": f"https://news.example/articles/{n}",
        "headline": f"Headline number {n}",
        "published_at": f"2025-05-14T{n % 24:02d}:00:00Z",
        **fields,
    }


def story(external_id: str = "s-1", **fields: Any) -> dict[str, Any]:
    return {
        "external_id": external_id,
        "title": f"Council votes on the budget ({external_id})",
        "overview": "The council voted on the budget after a long debate about schools.",
        "analysis_left": "The left focused on schools.",
        "analysis_center": "The center focused on the numbers.",
        "analysis_right": "The right focused on taxes.",
        "faq": [{"question": "What happened?", "answer": "A vote."}],
        "topics": ["Budget", "Education"],
        "articles": [article(1, "lefty"), article(2, "middle"), article(3, "righty")],
        **fields,
    }


def document(
    *stories: dict[str, Any], outlets: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    return {"outlets": OUTLETS if outlets is None else outlets, "stories": list(stories)}
