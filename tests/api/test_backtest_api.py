"""/api/backtest against the real MariaDB, Triton and Redis: the inline answer agrees with the
runner called directly; every bad request says why, at submission; a job cannot be submitted
without the job queue (503) but stored jobs are still read. Jobs that run on workers:
tests/jobs/."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import tritonclient.grpc.aio as grpc_aio
from litestar.testing import AsyncTestClient

from orchestrator.api.app import create_app
from orchestrator.backtest.request import BacktestRequest
from orchestrator.backtest.runner import run_backtest
from orchestrator.devstack.process import free_ports
from orchestrator.devstack.triton import TritonServer
from orchestrator.inference.client import SignalModels
from orchestrator.marketdata.db import Database
from orchestrator.settings import DatabaseSettings
from tests.api.conftest import api_settings
from tests.conftest import TrainedRepository

# The loaded BTCUSD bars run 2025-05-21 .. 2025-06-29; the first ~3 days are indicator warm-up.
BODY: dict[str, Any] = {
    "symbol": "BTCUSD",
    "start_date": "2025-06-10",
    "end_date": "2025-06-20",
    "strategy": "aggressive_filter",
    "params": {"fee_rate": 0.0002, "slippage": 0.0001},
}


@pytest.fixture
async def client(
    loaded: TrainedRepository,
    db: Database,
    db_settings: DatabaseSettings,
    model_server: TritonServer,
    redis_flushed: str,
) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    async with db.transaction() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM backtest_runs")  # tests count the jobs they submit
    async with AsyncTestClient(
        create_app(api_settings(db_settings, model_server, redis_flushed))
    ) as test_client:
        yield test_client


async def test_inline_answer_equals_the_runner(
    client: AsyncTestClient,  # type: ignore[type-arg]
    clean_db: Database,
    model_server: TritonServer,
) -> None:
    inline = await client.post("/api/backtest", json=BODY)
    assert inline.status_code == 200, inline.text
    result = inline.json()["result"]
    assert inline.json()["status"] == "done"
    assert result["bars"] == 11 * 288  # end_date is a whole day, included
    assert result["request"]["strategy"] == "aggressive_filter"
    assert result["metrics"]["overall"]["n_trades"] == len(result["trades"])

    triton = grpc_aio.InferenceServerClient(f"127.0.0.1:{model_server.grpc_port}")
    try:
        direct = await run_backtest(
            BacktestRequest(
                symbol="BTCUSD",
                start=datetime(2025, 6, 10, tzinfo=UTC),
                end=datetime(2025, 6, 21, tzinfo=UTC),
                strategy="aggressive_filter",
                fee_rate=0.0002,
                slippage=0.0001,
            ),
            db=clean_db,
            models=SignalModels(triton, 10.0),
            cache_dir=None,
        )
    finally:
        await triton.close()
    assert direct.metrics.overall.n_trades == result["metrics"]["overall"]["n_trades"]
    assert direct.metrics.overall.total_r == pytest.approx(result["metrics"]["overall"]["total_r"])


async def test_the_callers_levels_are_traded(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    body = {**BODY, "params": {**BODY["params"], "tp_atr": 2.0, "sl_atr": 0.5}}
    response = await client.post("/api/backtest", json=body)
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert (result["tp_atr"], result["sl_atr"]) == (2.0, 0.5)
    assert result["request"]["tp_atr"] == 2.0


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"strategy": "yolo"}, 400, "strategy"),
        ({"start_date": "10/06/2025"}, 400, "start_date"),
        ({"end_date": "2025-06-01"}, 400, "end_date"),
        ({"timeframe": "7m"}, 400, "timeframe"),
        ({"params": {"min_confidence": 3}}, 400, "params.min_confidence"),
        ({"params": {"walk_forward": 1}}, 400, "params.walk_forward"),
        ({"params": {"tp_atr": 0}}, 400, "params.tp_atr"),
        ({"params": {"leverage": 10}}, 400, None),
        ({"start_date": "2019-01-01", "end_date": "2019-02-01"}, 422, "start"),
        ({"symbol": "NOPEUSD"}, 404, "symbol"),
    ],
)
async def test_bad_requests_say_what_to_fix(
    client: AsyncTestClient,  # type: ignore[type-arg]
    change: dict[str, Any],
    status: int,
    field: str | None,
) -> None:
    response = await client.post("/api/backtest", json={**BODY, **change})
    assert response.status_code == status, response.text
    body = response.json()
    assert body["message"]
    if field is not None:
        assert body["field"] == field


def _as_job(body: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {**body, "params": {**body["params"], "run_as_job": True, **params}}


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"strategy": "yolo"}, 400, "strategy"),
        ({"symbol": "NOPEUSD"}, 404, "symbol"),
        ({"timeframe": "1h"}, 404, "timeframe"),  # no 1h models are served
        ({"params": {"walk_forward": 25}}, 400, "params.walk_forward"),
        ({"params": {"fee_rate": 0.5}}, 400, "params.fee_rate"),
    ],
)
async def test_jobs_are_checked_at_submission(
    client: AsyncTestClient,  # type: ignore[type-arg]
    change: dict[str, Any],
    status: int,
    field: str,
) -> None:
    """A job that cannot run is refused now, not recorded to fail on a worker later."""
    body = {**_as_job(BODY), **change}
    if "params" in change:
        body["params"] = {**body["params"], **change["params"]}
    response = await client.post("/api/backtest", json=body)
    assert response.status_code == status, response.text
    assert response.json()["field"] == field
    listed = await client.get("/api/backtest")
    assert listed.json()["total"] == 0


async def test_unknown_job_is_404(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    response = await client.get("/api/backtest/0123456789abcdef")
    assert response.status_code == 404
    assert response.json()["field"] == "job_id"
    cancel = await client.delete("/api/backtest/0123456789abcdef")
    assert cancel.status_code == 404
    malformed = await client.get("/api/backtest/not-a-job-id")
    assert malformed.status_code == 400
    assert malformed.json()["field"] == "job_id"


async def test_without_the_job_queue_submission_is_503_and_reads_still_work(
    client: AsyncTestClient,  # type: ignore[type-arg]
    db_settings: DatabaseSettings,
    model_server: TritonServer,
) -> None:
    queued = await client.post("/api/backtest", json=_as_job(BODY))  # no worker: stays queued
    assert queued.status_code == 202, queued.text
    (port,) = free_ports(1)
    nowhere = f"redis://127.0.0.1:{port}/0"
    async with AsyncTestClient(
        create_app(api_settings(db_settings, model_server, nowhere))
    ) as no_redis:
        refused = await no_redis.post("/api/backtest", json=_as_job(BODY))
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"] == "Job queue unavailable"
        assert f"the job queue (Redis at {nowhere}) is unavailable" in refused.json()["message"]
        inline = await no_redis.post("/api/backtest", json=BODY)  # inline needs no queue
        assert inline.status_code == 200, inline.text
        stored = await no_redis.get(queued.json()["status_url"])
        assert stored.status_code == 200, stored.text
        assert stored.json()["status"] == "queued"
        listed = (await no_redis.get("/api/backtest")).json()
        assert [item["id"] for item in listed["items"]] == [queued.json()["id"]]  # 503: not kept


def test_the_schema_declares_job_statuses_and_bounds() -> None:
    """The contract fuzzer generates from these; the gateway's types come from them."""
    from orchestrator.settings import Settings

    schema = create_app(Settings.from_env()).openapi_schema.to_schema()
    job = schema["components"]["schemas"]["BacktestJob"]["properties"]
    assert job["status"]["enum"] == ["queued", "running", "done", "failed", "cancelled"]
    params = schema["components"]["schemas"]["BacktestParams"]["properties"]
    walk_forward = params["walk_forward"]
    assert (walk_forward["minimum"], walk_forward["maximum"]) == (2, 24)
    post = schema["paths"]["/api/backtest"]["post"]["responses"]
    assert {"200", "202", "400", "404", "422", "503"} <= set(post)
    cancel = schema["paths"]["/api/backtest/{job_id}"]["delete"]["responses"]
    assert {"200", "202", "404", "409"} <= set(cancel)


async def test_a_15m_backtest_runs_on_the_15m_models(
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    response = await client.post("/api/backtest", json={**BODY, "timeframe": "15m"})
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert result["timeframe"] == "15m"
    assert result["bars"] == 11 * 96
    assert result["horizon_bars"] == 16  # intraday = 4 h of 15m bars
    missing = await client.post("/api/backtest", json={**BODY, "timeframe": "1h"})
    assert missing.status_code == 404
    assert "no 1h models are served" in missing.json()["message"]
