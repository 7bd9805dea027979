"""A model repository without a 5m set (as `make run DATA=real` serves: 1h and 1d only): the
served timeframes answer, and an unserved one is a 404 that names the fix, not a 503, because
Triton itself is up."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from litestar.testing import AsyncTestClient

from orchestrator.api.app import create_app
from orchestrator.devstack.triton import TritonServer
from orchestrator.settings import DatabaseSettings
from tests.api.conftest import api_settings
from tests.conftest import TrainedRepository, serve_triton


@pytest.fixture(scope="module")
def server_15m_only(
    trained: TrainedRepository, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    repository = Path(tmp_path_factory.mktemp("repository_15m_only"))
    for model in trained.cpu.glob("*_15m"):
        shutil.copytree(model, repository / model.name)
    yield from serve_triton(repository, tmp_path_factory, "triton-15m-only")


async def test_only_the_served_timeframe_answers_and_the_missing_base_set_is_a_404(
    loaded: TrainedRepository,
    server_15m_only: TritonServer,
    db_settings: DatabaseSettings,
    redis_flushed: str,
) -> None:
    app = create_app(api_settings(db_settings, server_15m_only, redis_flushed))
    async with AsyncTestClient(app) as client:
        served = await client.get("/api/predict/BTCUSD", params={"timeframe": "15m"})
        assert served.status_code == 200, served.text
        assert served.json()["feature_fingerprint"] == loaded.models_15m.spec.fingerprint
        for timeframe in ("5m", "1d"):
            missing = await client.get("/api/predict/BTCUSD", params={"timeframe": timeframe})
            assert missing.status_code == 404, missing.text
            body = missing.json()
            assert body["field"] == "timeframe"
            assert f"no {timeframe} models are served" in body["message"]
            assert f'make models TIMEFRAMES="{timeframe}"' in body["message"]
        health = (await client.get("/health")).json()
        assert health["triton"]["timeframes"] == ["15m"]
