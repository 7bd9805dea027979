"""The cpu profile's runners, loaded from Triton's backend directory for in-process use.

Triton runs model_repository/backends/<runner>/model.py as a Python-based backend; the
benchmarks' ceiling and the naive baseline run the very same file in this process, so both sides
of a comparison execute identical model code.
"""

from __future__ import annotations

import importlib.util
from types import ModuleType
from typing import Any

from orchestrator.devstack.triton import RUNNERS_DIR


def load_runner(name: str) -> ModuleType:
    """model_repository/backends/<name>/model.py as a module (its pb_utils import is optional)."""
    path = RUNNERS_DIR / name / "model.py"
    spec = importlib.util.spec_from_file_location(f"runners.{name}", path)
    if spec is None or spec.loader is None:
        raise FileNotFoundError(f"no runner at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


FusedEnsemble: Any = load_runner("fused_ensemble").FusedEnsemble
