"""The package's layers, read from its source: no import cycle (imports inside functions count), and nothing the
package's `__init__` imports imports it back (only the CLI and the page, above it, use the public API)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "actionrec"
KNOWN_CYCLES = [{"actionrec.serve.app", "actionrec.serve.routes"}]  # the page's; helper h18 / the lead switch it over


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, known: set[str]) -> set[str]:
    """The package's modules `name` imports anywhere in its source (a `from X import y` of a submodule y counts y)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name in known}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
            else:
                target = node.module or ""
            if not target.startswith("actionrec"):
                continue
            subs = {f"{target}.{a.name}" for a in node.names} & known
            names = [a.name for a in node.names if f"{target}.{a.name}" not in known]
            found |= subs
            if names and target in known:
                found.add(target)
    return found - {name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, set(modules)) for name, path in modules.items()}


def _reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()]:
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def test_nothing_the_package_imports_imports_it_back():
    graph = _graph()
    below = _reachable(graph, "actionrec")
    back = sorted(m for m in below if "actionrec" in graph[m])
    assert back == [], f"these modules import the package's __init__, which imports them: {back}"


def test_no_import_cycles():
    graph = _graph()
    cycles = []
    for module in graph:
        if module in _reachable(graph, module):
            ring = {m for m in _reachable(graph, module) if module in _reachable(graph, m)} | {module}
            if ring not in cycles and ring not in KNOWN_CYCLES:
                cycles.append(ring)
    assert cycles == [], f"import cycles: {[sorted(c) for c in cycles]}"
