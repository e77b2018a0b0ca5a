"""No import cycles among the modules of `newsletter/`: every import counts, at module
level or inside a function, since a function-level import only hides a cycle until the
function runs."""

from __future__ import annotations

import ast
from pathlib import Path

from newsletter.config import PROJECT_ROOT

PACKAGE = "newsletter"


def modules_of(root: Path, package: str) -> dict[str, Path]:
    """Dotted module name → file, for every `.py` file of `package` under `root`."""
    found = {}
    for path in sorted((root / package).rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


def _resolve(node: ast.ImportFrom, module: str, is_package: bool) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join([*base, *([node.module] if node.module else [])])


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of `known` that `module` imports anywhere in its file. `from X import
    a` imports the module `X.a` when there is one, else `X` itself."""
    tree = ast.parse(path.read_text("utf-8"), filename=str(path))
    targets: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = _resolve(node, module, path.name == "__init__.py")
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                targets.add(submodule if submodule in known else source)
    return {t for t in targets if t in known and t != module}


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    modules = modules_of(root, package)
    known = set(modules)
    return {name: imports_of(name, path, known) for name, path in modules.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan), each
    sorted: every one is a set of modules that import each other, directly or not."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


class TestImportCycles:
    def test_newsletter_has_no_import_cycle(self):
        graph = import_graph(PROJECT_ROOT, PACKAGE)
        assert len(graph) > 50, "the walk found too few modules to mean anything"
        assert cycles(graph) == []

    def test_a_cycle_through_a_function_level_import_is_found(self, tmp_path):
        pkg = tmp_path / "pkg"
        (pkg / "sub").mkdir(parents=True)
        (pkg / "__init__.py").write_text("")
        (pkg / "sub" / "__init__.py").write_text("")
        (pkg / "a.py").write_text("from pkg.sub import b\n")
        (pkg / "sub" / "b.py").write_text("def f():\n    from ..c import thing\n")
        (pkg / "c.py").write_text("import pkg.a\nthing = 1\n")
        (pkg / "d.py").write_text("from pkg import a, c\n")  # imports into a cycle: not in it
        assert cycles(import_graph(tmp_path, "pkg")) == [["pkg.a", "pkg.c", "pkg.sub.b"]]

    def test_importing_a_name_from_a_package_is_not_importing_its_modules(self, tmp_path):
        pkg = tmp_path / "pkg"
        pkg.mkdir()
        (pkg / "__init__.py").write_text("from pkg.a import VALUE\n")
        (pkg / "a.py").write_text("VALUE = 1\n")
        (pkg / "b.py").write_text("from pkg import a\n")
        graph = import_graph(tmp_path, "pkg")
        assert graph["pkg.b"] == {"pkg.a"}
        assert cycles(graph) == []


def test_the_web_app_does_not_load_the_clustering_libraries(tmp_path):
    """numpy, scikit-learn and datasketch (~80 MB, over a second to import) are for the
    worker's clustering; every web process would otherwise carry them."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    script = (
        "import sys\n"
        "from newsletter.app import create_app\n"
        f"create_app({{'DATABASE_URL': 'sqlite:///{tmp_path}/x.db', 'SECRET_KEY': 's' * 40,"
        f" 'OUTBOX_DIR': {str(tmp_path)!r}}})\n"
        "print(sorted(m for m in ('numpy', 'sklearn', 'datasketch') if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
