"""The map of the code holds: sa_numpy imports only NumPy; sa_torch never imports the course's
tooling; only the training package imports the training package; no source file is over 400
lines or without a docstring; and no module imports another that imports it back.

Imports are read from the source (every ``import``, also those inside functions), so a lazy
import counts as much as one at the top."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("sa_numpy", "sa_torch", "sa_course")
SOURCES = sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")) + sorted((ROOT / "benchmarks").glob("*.py"))
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in SOURCES if p.parts[-2] != "benchmarks" and module_name(p).split(".")[0] in PACKAGES}


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, absolute names; ``from a import b`` gives ``a.b`` when that is a module."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            submodules = {f"{base}.{alias.name}" for alias in node.names} & set(MODULES)
            found |= submodules
            if len(submodules) < len(node.names):     # a name defined in ``base`` itself
                found.add(base)
    return found


GRAPH = {name: imports(path) for name, path in MODULES.items()}


def test_the_map_covers_every_package():
    assert {n.split(".")[0] for n in MODULES} == set(PACKAGES)
    assert {"sa_torch.fused", "sa_torch.train", "sa_torch.train.loop", "sa_torch.official_weights"} <= set(MODULES)


def test_sa_numpy_imports_numpy_and_the_standard_library_only():
    allowed = set(sys.stdlib_module_names) | {"numpy", "sa_numpy", "__future__"}
    bad = {n: sorted(i for i in deps if i.split(".")[0] not in allowed)
           for n, deps in GRAPH.items() if n.startswith("sa_numpy")}
    assert {n: b for n, b in bad.items() if b} == {}


def test_sa_torch_never_imports_the_course_tooling():
    bad = {n: sorted(i for i in deps if i.split(".")[0] == "sa_course")
           for n, deps in GRAPH.items() if n.startswith("sa_torch")}
    assert {n: b for n, b in bad.items() if b} == {}


def test_only_the_training_package_imports_the_training_package():
    bad = {n: sorted(i for i in deps if i == "sa_torch.train" or i.startswith("sa_torch.train."))
           for n, deps in GRAPH.items() if n.startswith("sa_torch") and not n.startswith("sa_torch.train")}
    assert {n: b for n, b in bad.items() if b} == {}


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_source_files_are_short_and_say_what_they_are_for(path):
    lines = len(path.read_text().splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines, over {MAX_LINES}"
    assert ast.get_docstring(ast.parse(path.read_text())), f"{path.relative_to(ROOT)} has no module docstring"


def test_no_function_in_the_training_package_is_over_60_lines():
    """The training loop reads top to bottom: a step of it fits on a screen."""
    long = [f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({node.end_lineno - node.lineno + 1} lines)"
            for path in sorted((ROOT / "sa_torch" / "train").glob("*.py"))
            for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 60]
    assert long == [], f"functions over 60 lines: {long}"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A list of modules that import each other in a circle (first = last), or None."""
    done, path = set(), []

    def visit(node):
        if node in path:
            return path[path.index(node):] + [node]
        if node in done:
            return None
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            cycle = visit(nxt)
            if cycle:
                return cycle
        path.pop()
        done.add(node)
        return None
    for name in sorted(graph):
        cycle = visit(name)
        if cycle:
            return cycle
    return None


def test_the_cycle_finder_finds_a_planted_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_imports_another_that_imports_it_back():
    graph = {n: {d for d in deps if d in MODULES and d != n} for n, deps in GRAPH.items()}
    cycle = find_cycle(graph)
    assert cycle is None, f"import cycle: {' -> '.join(cycle)}"
