"""/health and /health/ready against the real database and Triton, and with each one down."""

from __future__ import annotations

import msgspec
from litestar.testing import AsyncTestClient

from orchestrator.api.app import create_app
from orchestrator.settings import (
    ApiSettings,
    DatabaseSettings,
    RedisSettings,
    Settings,
    TritonSettings,
)


def _settings(db: DatabaseSettings, triton: TritonSettings, redis_url: str) -> Settings:
    return Settings(db=db, triton=triton, api=ApiSettings(), redis=RedisSettings(url=redis_url))


async def test_all_up(
    db_settings: DatabaseSettings, triton_settings: TritonSettings, redis_url: str
) -> None:
    app = create_app(_settings(db_settings, triton_settings, redis_url))
    async with AsyncTestClient(app) as client:
        response = await client.get("/health")
        assert response.status_code == 200
        body = response.json()
        assert body["status"] == "ok"
        assert body["database"]["status"] == "up"
        assert body["redis"]["status"] == "up"
        assert "smoke_affine" in body["triton"]["models"]
        ready = await client.get("/health/ready")
        assert ready.status_code == 200


async def test_triton_down_names_the_address(
    db_settings: DatabaseSettings, triton_settings: TritonSettings, redis_url: str
) -> None:
    dead = msgspec.structs.replace(triton_settings, grpc_port=1)
    app = create_app(_settings(db_settings, dead, redis_url))
    async with AsyncTestClient(app) as client:
        body = (await client.get("/health")).json()
        assert body["status"] == "degraded"
        assert body["triton"]["status"] == "down"
        assert "127.0.0.1:1" in body["triton"]["address"]
        assert "make triton" in body["triton"]["detail"]
        assert (await client.get("/health/ready")).status_code == 503


async def test_database_down_names_the_address(
    db_settings: DatabaseSettings, triton_settings: TritonSettings, redis_url: str
) -> None:
    dead = msgspec.structs.replace(db_settings, port=1)
    app = create_app(_settings(dead, triton_settings, redis_url))
    async with AsyncTestClient(app) as client:
        body = (await client.get("/health")).json()
        assert body["database"]["status"] == "down"
        assert "127.0.0.1:1" in body["database"]["detail"]
        assert "make db" in body["database"]["detail"]
        assert (await client.get("/health/ready")).status_code == 503


async def test_redis_down_is_reported_but_the_replica_stays_ready(
    db_settings: DatabaseSettings, triton_settings: TritonSettings
) -> None:
    app = create_app(_settings(db_settings, triton_settings, "redis://127.0.0.1:1/0"))
    async with AsyncTestClient(app) as client:
        body = (await client.get("/health")).json()
        assert body["status"] == "degraded"
        assert body["redis"]["status"] == "down"
        assert "make redis" in body["redis"]["detail"]
        assert (await client.get("/health/ready")).status_code == 200
        stats = (await client.get("/api/stats")).json()["shared"]
        assert stats["rate_limit_in_memory"] is True  # the request was counted without Redis
