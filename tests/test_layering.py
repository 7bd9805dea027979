"""The dependency arrow points from training (`export`) to serving (`orchestrator`), never back:
no module of the serving package imports the training package, except the entry points that
wire training in — the job worker (walk-forward jobs), the backtest CLI's `--walk-forward` and the
`ml-engine train` command — as `api/app.py` wires the API."""

from __future__ import annotations

import ast

from orchestrator.settings import PROJECT_ROOT

ENTRY_POINTS = {
    "orchestrator/jobs/worker.py",
    "orchestrator/backtest/command.py",
    # `ml-engine train` imports export inside the command, when it runs (tests/test_console.py
    # checks that the other commands never load it).
    "orchestrator/console.py",
}


def _is_export(name: str | None) -> bool:
    return name is not None and (name == "export" or name.startswith("export."))


def _imports_export(path: str) -> bool:
    tree = ast.parse((PROJECT_ROOT / path).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import) and any(_is_export(a.name) for a in node.names):
            return True
        if isinstance(node, ast.ImportFrom) and node.level == 0 and _is_export(node.module):
            return True
    return False


def test_serving_modules_never_import_training() -> None:
    modules = sorted(
        str(p.relative_to(PROJECT_ROOT)) for p in (PROJECT_ROOT / "orchestrator").rglob("*.py")
    )
    importing = {m for m in modules if _imports_export(m)}
    assert importing <= ENTRY_POINTS, sorted(importing - ENTRY_POINTS)
    assert "orchestrator/jobs/worker.py" in importing  # the check sees real imports
