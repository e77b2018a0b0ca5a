"""Per-dialect statements are chosen in `newsletter.db` only: no other module imports
`sqlalchemy.dialects` (its `insert` constructs included)."""

from __future__ import annotations

import ast
from pathlib import Path

from newsletter.config import PROJECT_ROOT

PACKAGES = ("newsletter", "jobs", "webhooks")
ALLOWED = PROJECT_ROOT / "newsletter" / "db"


def dialect_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text("utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found += [f"{path.name}:{node.lineno} {n}" for n in names if "sqlalchemy.dialects" in n]
    return found


def test_only_the_db_package_imports_sqlalchemy_dialects() -> None:
    offenders = [
        hit
        for package in PACKAGES
        for path in sorted((PROJECT_ROOT / package).rglob("*.py"))
        if ALLOWED not in path.parents
        for hit in dialect_imports(path)
    ]
    assert offenders == []


def test_the_check_sees_a_dialect_insert(tmp_path: Path) -> None:
    sample = tmp_path / "sample.py"
    sample.write_text(
        "from sqlalchemy.dialects.postgresql import insert\nimport sqlalchemy.dialects.sqlite\n"
    )
    assert dialect_imports(sample) == [
        "sample.py:1 sqlalchemy.dialects.postgresql.insert",
        "sample.py:2 sqlalchemy.dialects.sqlite",
    ]
