"""The model registry against the real MariaDB: sync from a repository, moves, rollback, races."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from orchestrator.lifecycle.exported import exported_versions, sync_registry
from orchestrator.lifecycle.registry import (
    ModelRegistry,
    ModelVersionNotFoundError,
    StatusMoveError,
)
from orchestrator.marketdata.db import Database
from orchestrator.settings import PROJECT_ROOT

COMMITTED = PROJECT_ROOT / "model_repository" / "real" / "cpu" / "signal_ensemble_1h"
SET = "signal_ensemble_1h"


def _repository(root: Path, versions: list[int]) -> Path:
    """A model repository whose ensemble has `versions`, each with the committed real 1h set's
    card and spec (all the registry reads)."""
    source = max((p for p in COMMITTED.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    for version in versions:
        target = root / SET / str(version)
        target.mkdir(parents=True, exist_ok=True)
        for name in ("model_card.json", "feature_spec.json"):
            shutil.copy2(source / name, target / name)
    return root


@pytest.fixture
async def registry(db: Database) -> ModelRegistry:
    async with db.transaction() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM model_version_events")
        await cur.execute("DELETE FROM model_versions")
    return ModelRegistry(db)


async def _statuses(registry: ModelRegistry) -> dict[int, str]:
    return {v.version: v.status for v in await registry.versions(SET)}


async def test_sync_registers_every_version_and_makes_the_newest_champion(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    repository = _repository(tmp_path, [1, 2])
    versions = await sync_registry(registry, repository, "test")
    assert {(v.version, v.status) for v in versions} == {(1, "candidate"), (2, "champion")}
    champion = next(v for v in versions if v.status == "champion")
    assert champion.timeframe == "1h"
    assert champion.symbols == ["BTCUSD", "EURUSD"]
    assert champion.trained_through is not None
    assert champion.trained_through.isoformat() == "2019-09-12T09:00:00+00:00"
    assert set(champion.metrics["served_skill"]) == {"scalping", "intraday", "swing", "position"}
    assert champion.metrics["coverage_level"] == 0.8
    # A second sync changes nothing; a new version arrives as a candidate.
    await sync_registry(registry, repository, "test")
    _repository(tmp_path, [3])
    await sync_registry(registry, repository, "test")
    assert await _statuses(registry) == {1: "candidate", 2: "champion", 3: "candidate"}
    assert [v.version for v in exported_versions(repository)] == [1, 2, 3]


async def test_promotion_retires_the_champion_and_rollback_brings_it_back(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    await sync_registry(registry, _repository(tmp_path, [1, 2]), "test")
    await registry.move(SET, 1, "challenger", "retrain job", "trained on newer bars")
    decision = {"verdict": "promote", "offline": {"rows": 1200}}
    promoted = await registry.move(SET, 1, "champion", "promotion test", "beat both", decision)
    assert promoted.decision == decision
    assert await _statuses(registry) == {1: "champion", 2: "retired"}
    back = await registry.rollback(SET, "admin", "live skill fell")
    assert back.version == 2
    assert back.status_reason == "rollback: live skill fell"
    assert await _statuses(registry) == {1: "retired", 2: "champion"}
    events = await registry.events(SET)
    assert [(e.version, e.from_status, e.to_status) for e in events[:2]] == [
        (2, "retired", "champion"),
        (1, "champion", "retired"),
    ]
    assert events[1].reason == "replaced by v2: rollback: live skill fell"


async def test_moves_that_make_no_sense_are_refused_with_the_way_out(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    await sync_registry(registry, _repository(tmp_path, [1, 2]), "test")
    await registry.move(SET, 1, "rejected", "promotion test", "lost to the baseline")
    with pytest.raises(StatusMoveError, match="v1 is rejected: it can move to nothing"):
        await registry.move(SET, 1, "champion", "admin", "try anyway")
    with pytest.raises(StatusMoveError, match="no earlier champion"):
        await registry.rollback(SET, "admin", "nothing to go back to")
    with pytest.raises(ModelVersionNotFoundError, match="no version 9"):
        await registry.move(SET, 9, "challenger", "admin", "typo")
    with pytest.raises(ModelVersionNotFoundError, match="no model set 'signal_ensemble_2h'"):
        await registry.rollback("signal_ensemble_2h", "admin", "typo")
    assert StatusMoveError.status == 409
    assert ModelVersionNotFoundError.status == 404


async def test_racing_promotions_leave_exactly_one_champion(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    await sync_registry(registry, _repository(tmp_path, [1, 2, 3, 4]), "test")
    results = await asyncio.gather(
        *(registry.move(SET, v, "champion", f"admin {v}", "race") for v in (1, 2, 3)),
        return_exceptions=True,
    )
    assert not [r for r in results if isinstance(r, BaseException)]
    statuses = await _statuses(registry)
    assert list(statuses.values()).count("champion") == 1
    assert list(statuses.values()).count("retired") == 3


async def test_replicas_syncing_at_once_register_each_version_once(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    repository = _repository(tmp_path, [1, 2, 3])
    replicas = [ModelRegistry(registry.db) for _ in range(3)]
    await asyncio.gather(
        *(sync_registry(r, repository, f"replica {i}") for i, r in enumerate(replicas))
    )
    assert await _statuses(registry) == {1: "candidate", 2: "candidate", 3: "champion"}
    events = await registry.events(SET)
    assert sorted((e.version, e.to_status) for e in events) == [
        (1, "candidate"),
        (2, "candidate"),
        (3, "candidate"),
        (3, "champion"),
    ]
