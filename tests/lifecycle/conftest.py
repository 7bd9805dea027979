"""Helpers of the lifecycle tests: a repository holding a second version of every model, and a
registry emptied or filled from it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from export.exporter import export_profiles
from orchestrator.inference.models import ENSEMBLE
from orchestrator.lifecycle.exported import exported_versions
from orchestrator.lifecycle.registry import ModelRegistry
from orchestrator.marketdata.db import Database
from tests.conftest import TrainedRepository


def with_second_version(
    trained: TrainedRepository, tmp_path_factory: pytest.TempPathFactory, name: str
) -> Path:
    """A copy of the suite's cpu repository with the same models exported again (its cpu
    profile, to serve with serve_triton)."""
    root = tmp_path_factory.mktemp(name)
    shutil.copytree(trained.cpu, root / "cpu", symlinks=True)
    export_profiles(trained.models, root, profiles=("cpu",))
    return root / "cpu"


async def empty_registry(db: Database) -> ModelRegistry:
    async with db.transaction() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM model_version_events")
        await cur.execute("DELETE FROM model_versions")
    return ModelRegistry(db)


async def registered(db: Database, repository: Path) -> tuple[ModelRegistry, tuple[int, int]]:
    """An empty registry holding the repository's two newest ensemble versions as candidates."""
    registry = await empty_registry(db)
    entries = [e for e in exported_versions(repository) if e.model_set == ENSEMBLE][-2:]
    for entry in entries:
        await registry.register(entry, "test", "exported")
    return registry, (entries[0].version, entries[1].version)
