"""POST /api/backtest + GET /api/backtest/{id} against the real MariaDB and Triton: inline and job
answers agree with each other and with the runner called directly; every bad request says why."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
import tritonclient.grpc.aio as grpc_aio
from litestar.testing import AsyncTestClient

from orchestrator.api.app import create_app
from orchestrator.backtest.request import BacktestRequest
from orchestrator.backtest.runner import run_backtest
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
    db_settings: DatabaseSettings,
    model_server: TritonServer,
    redis_flushed: str,
) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    async with AsyncTestClient(
        create_app(api_settings(db_settings, model_server, redis_flushed))
    ) as test_client:
        yield test_client


async def test_inline_and_job_answers_equal_the_runner(
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

    queued = await client.post(
        "/api/backtest", json={**BODY, "params": {**BODY["params"], "run_as_job": True}}
    )
    assert queued.status_code == 202, queued.text
    status_url = queued.json()["status_url"]
    for _ in range(600):
        job = (await client.get(status_url)).json()
        if job["status"] in ("done", "failed"):
            break
        assert 0.0 <= job["progress"] <= 1.0
        await asyncio.sleep(0.1)
    assert job["status"] == "done", job
    assert job["result"]["metrics"] == result["metrics"]
    assert job["result"]["trades"] == result["trades"]

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


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"strategy": "yolo"}, 400, "strategy"),
        ({"start_date": "10/06/2025"}, 400, "start_date"),
        ({"end_date": "2025-06-01"}, 400, "end_date"),
        ({"timeframe": "7m"}, 400, "timeframe"),
        ({"params": {"min_confidence": 3}}, 400, "min_confidence"),
        ({"params": {"walk_forward": 1}}, 400, "params.walk_forward"),
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


async def test_unknown_job_is_404(client: AsyncTestClient) -> None:  # type: ignore[type-arg]
    response = await client.get("/api/backtest/0123456789abcdef")
    assert response.status_code == 404
    assert response.json()["field"] == "job_id"


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
    assert missing.status_code == 400
    assert "no 1h models are served" in missing.json()["message"]
