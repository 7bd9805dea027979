"""The dependency arrow points from training (`export`) to serving (`orchestrator`), never back:
no module of the serving package imports the training package, except the entry points that
wire training in — the job worker (walk-forward jobs), the backtest CLI's `--walk-forward` and the
`ml-engine train` command — as `api/app.py` wires the API."""

from __future__ import annotations

import ast
import re

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


def test_the_bars_table_is_queried_only_by_the_market_data_stores() -> None:
    """Every query over `bars` lives in orchestrator/marketdata/ (BarStore, and the calendar and
    watermark stores beside it); the engine, the poller and the backtests ask those."""
    pattern = re.compile(r"\b(FROM|INTO|UPDATE|JOIN)\s+bars\b", re.IGNORECASE)
    outside = sorted(
        str(p.relative_to(PROJECT_ROOT))
        for p in (PROJECT_ROOT / "orchestrator").rglob("*.py")
        if "marketdata" not in p.parts and pattern.search(p.read_text())
    )
    assert outside == []
