"""POST /api/models/{set}/retrain and GET /api/models/retrains/{id} against the real MariaDB,
Redis and Triton, with no worker running: the run is queued durably, one per set, admins only.
The run itself (training, install, verdict) is tested in tests/lifecycle/test_retrain.py."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator

import msgspec
import pytest
import redis
from litestar.testing import AsyncTestClient

from orchestrator.api.app import create_app
from orchestrator.devstack.triton import TritonServer
from orchestrator.jobs.runs import RunStore
from orchestrator.marketdata.db import Database
from orchestrator.settings import ApiSettings, DatabaseSettings
from tests.api.conftest import api_settings

USER = {"X-API-Key": "user-key"}
ADMIN = {"X-API-Key": "admin-key"}


@pytest.fixture
async def client(
    db: Database, db_settings: DatabaseSettings, model_server: TritonServer, redis_flushed: str
) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    async with db.transaction() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM model_version_events")
        await cur.execute("DELETE FROM model_versions")
        await cur.execute("DELETE FROM backtest_runs")
    keys = ApiSettings(
        internal_api_key="user-key", admin_api_key="admin-key", rate_limit_per_minute=1_000_000
    )
    settings = api_settings(db_settings, model_server, redis_flushed, api=keys)
    triton = msgspec.structs.replace(
        settings.triton, model_repository=str(model_server.model_repository)
    )
    app = create_app(msgspec.structs.replace(settings, triton=triton))
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def test_an_admin_queues_one_retrain_per_set(
    client: AsyncTestClient,  # type: ignore[type-arg]
    redis_flushed: str,
    db: Database,
) -> None:
    body = {"reason": "weekly refresh", "epochs": 2}
    assert (await client.post("/api/models/signal_ensemble/retrain", json=body)).status_code == 401
    refused = await client.post("/api/models/signal_ensemble/retrain", json=body, headers=USER)
    assert refused.status_code == 403

    queued = await client.post("/api/models/signal_ensemble/retrain", json=body, headers=ADMIN)
    assert queued.status_code == 202, queued.text
    run = queued.json()
    assert (run["model_set"], run["trigger"], run["reason"], run["status"]) == (
        "signal_ensemble",
        "manual",
        "weekly refresh",
        "queued",
    )
    # The job waits in Redis for a worker, under the run's id.
    jobs = redis.Redis.from_url(redis_flushed)
    try:
        keys = [k.decode() for k in jobs.keys("saq:*")]
    finally:
        jobs.close()
    assert any(run["run_id"] in key for key in keys), keys

    again = await client.post("/api/models/signal_ensemble/retrain", json=body, headers=ADMIN)
    assert again.status_code == 409
    assert run["run_id"] in again.json()["message"]
    # Another set is not held up by this one.
    other = await client.post("/api/models/signal_ensemble_15m/retrain", json=body, headers=ADMIN)
    assert other.status_code == 202, other.text

    status = await client.get(run["status_url"], headers=USER)
    assert status.status_code == 200
    assert status.json()["run_id"] == run["run_id"]
    listed = (await client.get("/api/models", headers=USER)).json()["sets"]
    last = {entry["model_set"]: entry["last_retrain"] for entry in listed}
    assert last["signal_ensemble"]["run_id"] == run["run_id"]
    assert last["signal_ensemble_15m"]["run_id"] == other.json()["run_id"]
    # A retrain is not a backtest job, and the backtest list does not show it.
    assert (await client.get(f"/api/backtest/{run['run_id']}", headers=USER)).status_code == 404
    backtests = (await client.get("/api/backtest", headers=USER)).json()
    assert backtests["total"] == 0

    # Prometheus: the champion per set, no challenger, hours since the last finished retrain.
    await RunStore(db).request_cancel(run["run_id"])
    metrics = (await client.get("/metrics", headers=USER)).text
    champion = next(s for s in listed if s["model_set"] == "signal_ensemble")["champion"]
    assert f'ml_engine_champion_version{{model_set="signal_ensemble"}} {champion:.1f}' in metrics
    assert 'ml_engine_challenger_version{model_set="signal_ensemble"} 0.0' in metrics
    hours = re.search(
        r'ml_engine_hours_since_retrain\{model_set="signal_ensemble"\} (\S+)', metrics
    )
    assert hours is not None
    assert 0.0 <= float(hours[1]) < 0.1
    assert 'ml_engine_last_retrain_failed{model_set="signal_ensemble"} 0.0' in metrics


async def test_bad_retrain_requests_say_what_to_fix(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    unknown = await client.post(
        "/api/models/signal_ensemble_4h/retrain", json={"reason": "try"}, headers=ADMIN
    )
    assert unknown.status_code == 404
    assert "no model set 'signal_ensemble_4h'" in unknown.json()["message"]
    bad = await client.post(
        "/api/models/signal_ensemble/retrain",
        json={"reason": "try", "folds": 1},
        headers=ADMIN,
    )
    assert bad.status_code == 400
    assert "folds" in bad.text
    missing = await client.get("/api/models/retrains/0123456789abcdef", headers=USER)
    assert missing.status_code == 404
    assert "no retrain job" in missing.json()["message"]
