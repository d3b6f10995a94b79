"""The shape of the code a newcomer walks: no import cycle, short modules and functions,
no private name used across modules. Read from the source with `ast`, nothing imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "optexp"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 50


def modules() -> dict[str, Path]:
    """optexp's modules by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imported(tree: ast.AST, name: str, path: Path) -> list[tuple[str, list[str]]]:
    """(module, names taken from it) for every import of an optexp module, wherever it
    stands: a lazy import inside a function is a dependency too."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, []) for alias in node.names if alias.name.startswith("optexp")]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            if base.startswith("optexp"):
                out.append((base, [alias.name for alias in node.names]))
    return out


def graph() -> dict[str, set[str]]:
    """module -> the optexp modules it imports (`from optexp import x` names module x when
    x is one)."""
    known = modules()
    edges: dict[str, set[str]] = {}
    for name, path in known.items():
        targets = set()
        for module, names in imported(ast.parse(path.read_text()), name, path):
            subs = [f"{module}.{n}" for n in names if f"{module}.{n}" in known]
            targets |= set(subs) or {module}
            if len(subs) < len(names):  # names defined in the module itself
                targets.add(module)
        edges[name] = {t for t in targets if t in known and t != name}
    return edges


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(edges):
        if start not in state and (found := visit(start)):
            return found
    return None


def test_the_checker_finds_a_cycle() -> None:
    assert cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_optexp() -> None:
    edges = graph()
    assert edges.get("optexp.train"), "the graph was not read"
    # A package's __init__ that re-exports from its own modules is not a cycle of logic.
    for name in list(edges):
        edges[name] = {t for t in edges[name] if not name.startswith(t + ".")}
    assert cycle(edges) is None


@pytest.mark.parametrize("name", sorted(modules()))
def test_module_is_short(name: str) -> None:
    lines = len(modules()[name].read_text().splitlines())
    assert lines <= MAX_MODULE_LINES, f"{name}: {lines} lines"


def test_functions_are_short() -> None:
    long = []
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name}: {length} lines")
    assert not long


def test_no_private_name_is_imported_across_modules() -> None:
    private = []
    for name, path in modules().items():
        for module, names in imported(ast.parse(path.read_text()), name, path):
            private += [f"{name} imports {module}.{n}" for n in names if n.startswith("_")]
    assert not private


def test_the_documented_metrics_json_schema_is_the_written_one():
    """docs/architecture.md lists metrics.json's fields; rundir.Summary is what is written."""
    import dataclasses
    import re

    from optexp.rundir import Summary

    page = (REPO / "docs" / "architecture.md").read_text()
    table = page.split("<!-- summary-schema")[1].split("<!-- /summary-schema -->")[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", table, flags=re.M)
    assert documented == [f.name for f in dataclasses.fields(Summary)]


def test_every_function_the_architecture_page_names_exists():
    """docs/architecture.md names code as module.name (`train.run`, `cli/app.prepare_job`,
    `state.PARTS`); each must still be defined there, so the page cannot describe code
    that is gone."""
    import re

    page = (REPO / "docs" / "architecture.md").read_text()
    named = set(re.findall(r"\b((?:\w+/)*\w+)\.([A-Za-z_]\w*)(\*?)", page))
    missing, checked = [], 0
    for module, name, star in sorted(named):
        path = PACKAGE / f"{module}.py"
        if not path.is_file() or name in ("py", "md", "json", "yaml", "pt"):  # file names
            continue
        checked += 1
        defined = defined_names(path)
        if not any(d == name or (star and d.startswith(name)) for d in defined):
            missing.append(f"{module}.{name}{star}")
    assert checked >= 20, "the page's names were not read"
    assert not missing, f"docs/architecture.md names what no longer exists: {missing}"


def defined_names(path: Path) -> set[str]:
    """Every function, class and assigned name of a module, at any depth."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign | ast.AnnAssign):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names |= {t.id for t in targets if isinstance(t, ast.Name)}
    return names
