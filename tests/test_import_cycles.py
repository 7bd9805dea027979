"""Imports among `orchestrator` modules form no cycle, and the job system does not import the API.

The graph is read from the source (as tests/test_layering.py reads it): an edge for every import
that runs, at module level or inside a function (a deferred import keeps start-up light but is a
dependency all the same, and a cycle through one still ties the two modules together). Imports
under `if TYPE_CHECKING:` are left out: they exist for annotations only and never run.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from orchestrator.settings import PROJECT_ROOT

PACKAGE = PROJECT_ROOT / "orchestrator"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(nodes: list[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, skipping `if TYPE_CHECKING:` bodies."""
    for node in nodes:
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
        elif isinstance(node, ast.If) and _is_type_checking(node):
            yield from _imports(node.orelse)
            continue
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.stmt):
                yield from _imports([child])
            elif isinstance(child, ast.excepthandler):
                yield from _imports(child.body)


def imported(module: str) -> set[str]:
    """The orchestrator modules `module` imports (a `from package import name` that names a
    submodule counts as importing that submodule)."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in _imports(ast.parse(path.read_text()).body):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names
            ]
        found.update(name for name in names if name in MODULES and name != module)
    return found


GRAPH = {module: imported(module) for module in MODULES}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
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


def test_the_check_sees_real_imports_and_real_cycles() -> None:
    assert "orchestrator.errors" in GRAPH["orchestrator.cli"]
    assert "orchestrator.realdata.command" in GRAPH["orchestrator.cli"]  # inside a function
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles_among_orchestrator_modules() -> None:
    assert cycles(GRAPH) == []


def test_the_job_system_never_imports_the_api() -> None:
    """The worker runs without Litestar; jobs/ is what the API calls, never the other way."""
    offending = {
        (module, target)
        for module, targets in GRAPH.items()
        if module.startswith("orchestrator.jobs")
        for target in targets
        if target.startswith("orchestrator.api")
    }
    assert offending == set()


def test_commands_never_import_the_cli() -> None:
    """The sub-commands' modules are imported by cli.py, which they must not import back."""
    importing = {module for module, targets in GRAPH.items() if "orchestrator.cli" in targets}
    assert importing <= {"orchestrator.__main__", "orchestrator.console"}, sorted(importing)
