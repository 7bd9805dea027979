"""What each image installs, read from the lock: the API's dependency set (the project without
extras, as `uv sync --frozen --no-dev` installs it) holds no training stack; the `training` extra
(the worker and `python -m export`) does."""

from __future__ import annotations

import tomllib
from collections.abc import Iterable
from typing import Any

from orchestrator.settings import PROJECT_ROOT

PROJECT = "trading-ml-engine"
TRAINING_STACK = {"torch", "onnx", "onnxruntime", "xgboost", "scikit-learn"}


def _lock() -> dict[str, dict[str, Any]]:
    with (PROJECT_ROOT / "uv.lock").open("rb") as file:
        return {package["name"]: package for package in tomllib.load(file)["package"]}


def _closure(packages: dict[str, dict[str, Any]], roots: Iterable[dict[str, Any]]) -> set[str]:
    """Every package the `roots` requirements pull in, with the extras they name."""
    seen: set[str] = set()
    pending = list(roots)
    while pending:
        requirement = pending.pop()
        name = requirement["name"]
        package = packages[name]
        extras = requirement.get("extra", [])
        if name not in seen:
            seen.add(name)
            pending.extend(package.get("dependencies", []))
        for extra in extras:
            pending.extend(package.get("optional-dependencies", {}).get(extra, []))
    return seen


def test_the_api_installs_no_training_stack() -> None:
    packages = _lock()
    api = _closure(packages, packages[PROJECT]["dependencies"])
    assert not api & TRAINING_STACK, sorted(api & TRAINING_STACK)
    assert {"litestar", "tritonclient", "asyncmy", "redis", "saq"} <= api


def test_the_training_extra_brings_it() -> None:
    packages = _lock()
    training = packages[PROJECT]["optional-dependencies"]["training"]
    assert _closure(packages, training) >= TRAINING_STACK
