"""/health checks the served models' feature fingerprints against the running pipeline."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from litestar.testing import AsyncTestClient

from orchestrator.api.app import create_app
from orchestrator.devstack.triton import TritonServer
from orchestrator.settings import (
    ApiSettings,
    DatabaseSettings,
    RedisSettings,
    Settings,
    TritonSettings,
)
from tests.conftest import free_ports
from tests.models.conftest import TrainedRepository


def _settings(db: DatabaseSettings, server: TritonServer, redis_url: str) -> Settings:
    triton = TritonSettings(
        http_port=server.http_port,
        grpc_port=server.grpc_port,
        metrics_port=server.metrics_port,
        model_repository=str(server.model_repository),
    )
    return Settings(db=db, triton=triton, api=ApiSettings(), redis=RedisSettings(url=redis_url))


async def test_health_lists_compatible_models(
    db_settings: DatabaseSettings, model_server: TritonServer, redis_url: str
) -> None:
    async with AsyncTestClient(
        create_app(_settings(db_settings, model_server, redis_url))
    ) as client:
        body = (await client.get("/health")).json()
    assert body["status"] == "ok", body
    assert body["triton"]["status"] == "up"
    assert "signal_ensemble" in body["triton"]["models"]


async def test_health_flags_a_model_trained_with_other_features(
    db_settings: DatabaseSettings, trained: TrainedRepository, tmp_path: Path, redis_url: str
) -> None:
    repository = tmp_path / "repository"
    shutil.copytree(trained.cpu / "range_gru", repository / "range_gru")
    config = repository / "range_gru" / "config.pbtxt"
    config.write_text(
        re.sub(
            r'(feature_fingerprint" value: \{ string_value: ")\w+',
            r"\g<1>0123456789abcdef",
            config.read_text(),
        )
    )
    http, grpc, metrics = free_ports(3)
    server = TritonServer(repository, http, grpc, metrics, run_dir=tmp_path, name="triton-stale")
    server.start()
    try:
        async with AsyncTestClient(create_app(_settings(db_settings, server, redis_url))) as client:
            response = await client.get("/health/ready")
        body = response.json()
    finally:
        server.stop()
    assert response.status_code == 503
    assert body["triton"]["status"] == "incompatible"
    assert (
        "range_gru was trained with feature pipeline 0123456789abcdef" in body["triton"]["detail"]
    )
    assert "make models" in body["triton"]["detail"]
