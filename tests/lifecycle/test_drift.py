"""Drift warnings become retrains (real MariaDB and Redis): one per drifting set, none while the
set retrains, none again within the cooldown, none when switched off."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from orchestrator.jobs.runs import RunStore
from orchestrator.jobs.service import BacktestJobService
from orchestrator.jobs.settings import JobSettings
from orchestrator.lifecycle.drift import DriftRetrainer
from orchestrator.lifecycle.retraining import RetrainSettings
from orchestrator.marketdata.db import Database
from orchestrator.quality.totals import Drift
from orchestrator.settings import RedisSettings

DRIFT_5M = Drift("5m", "3", "5m v3 intraday: live coverage 0.610 over the last 500 predictions")
DRIFT_1H = Drift("1h", "2", "1h v2 swing: live coverage 0.930 over the last 400 predictions")


@pytest.fixture
async def jobs(db: Database, redis_flushed: str) -> AsyncIterator[BacktestJobService]:
    async with db.transaction() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM backtest_runs")

    async def database() -> Database:
        return db

    service = BacktestJobService(database, RedisSettings(url=redis_flushed), JobSettings())
    yield service
    await service.close()


async def test_each_drifting_set_is_retrained_once_per_cooldown(
    db: Database, jobs: BacktestJobService
) -> None:
    async def database() -> Database:
        return db

    retrain = DriftRetrainer(jobs, database, RetrainSettings(drift_cooldown_h=24))
    queued = await retrain([DRIFT_5M, DRIFT_1H, DRIFT_5M])
    assert sorted(r.parameters.retrain.model_set for r in queued if r.parameters.retrain) == [
        "signal_ensemble",
        "signal_ensemble_1h",
    ]
    first = next(
        r
        for r in queued
        if r.parameters.retrain and r.parameters.retrain.model_set == "signal_ensemble"
    )
    assert first.parameters.retrain is not None
    assert first.parameters.retrain.trigger == "drift"
    assert "live coverage 0.610" in first.parameters.retrain.reason
    # While it waits for a worker, another warning queues nothing.
    assert await retrain([DRIFT_5M]) == []
    # Finished (here: cancelled) within the cooldown: still nothing.
    await RunStore(db).request_cancel(first.id)
    assert await retrain([DRIFT_5M]) == []
    # Without a cooldown window left, the next warning retrains again.
    later = DriftRetrainer(jobs, database, RetrainSettings(drift_cooldown_h=24))
    async with db.transaction() as conn, conn.cursor() as cur:
        await cur.execute(
            "UPDATE backtest_runs SET created_at = created_at - INTERVAL 25 HOUR WHERE id = %s",
            (first.id,),
        )
    again = await later([DRIFT_5M])
    assert [r.parameters.retrain.trigger for r in again if r.parameters.retrain] == ["drift"]
    # RETRAIN_DRIFT_COOLDOWN_H=0 switches the trigger off.
    off = DriftRetrainer(jobs, database, RetrainSettings(drift_cooldown_h=0))
    assert await off([DRIFT_1H]) == []
