"""HOUSE item 1: serving never imports training. The API enqueues jobs by task name; only the
worker imports the walk-forward code (export, torch)."""

from __future__ import annotations

import subprocess
import sys

from orchestrator.settings import PROJECT_ROOT


def _top_level_modules_after(statement: str, names: tuple[str, ...]) -> set[str]:
    """The `names` a fresh interpreter has loaded after running `statement`."""
    wanted = ", ".join(repr(n) for n in names)
    found = f"{{m.split('.')[0] for m in sys.modules}} & {{{wanted}}}"
    code = f"{statement}; import sys; print(' '.join(sorted({found})))"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return set(done.stdout.split())


def test_the_api_does_not_load_the_training_stack() -> None:
    loaded = _top_level_modules_after("import orchestrator.api.app", ("export", "torch", "xgboost"))
    assert loaded == set(), f"importing the API loaded {sorted(loaded)}"


def test_the_worker_is_what_loads_it_and_it_runs_without_litestar() -> None:
    """Beyond direct imports (tests/test_import_cycles.py): nothing the worker imports pulls
    the web framework in. One interpreter for both facts: importing the worker costs seconds."""
    loaded = _top_level_modules_after(
        "import orchestrator.jobs.worker", ("export", "torch", "litestar")
    )
    assert loaded == {"export", "torch"}
