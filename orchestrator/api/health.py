"""Liveness and readiness: what the gateway and `make run` look at first."""

from __future__ import annotations

import asyncio

import msgspec
from litestar import Controller, Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from redis.exceptions import RedisError

from orchestrator.api.resources import Resources
from orchestrator.features.spec import FeatureSpecMismatchError
from orchestrator.inference.models import (
    ENSEMBLE,
    FEATURE_MODELS,
    SERVED_TIMEFRAMES,
    served_name,
    verify_served_models,
)
from orchestrator.marketdata.db import DatabaseUnavailableError

_CHECK_TIMEOUT_S = 2.0


class DependencyStatus(msgspec.Struct):
    status: str  # "up" or "down"
    address: str
    detail: str = ""


class TritonStatus(msgspec.Struct):
    """Triton's block, which alone lists models: what it serves, not only whether it answers."""

    status: str  # "up", "down", or "incompatible" (models trained with other features)
    address: str
    detail: str = ""
    models: list[str] = []
    timeframes: list[str] = []  # timeframes with a served, compatible signal ensemble


class HealthReport(msgspec.Struct):
    status: str  # "ok" when every dependency is up, else "degraded"
    database: DependencyStatus
    triton: TritonStatus
    # Shared state of the replicas; serving goes on without it (docs/reliability.md), so it does
    # not decide readiness.
    redis: DependencyStatus

    @property
    def ready(self) -> bool:
        return self.database.status == self.triton.status == "up"


async def _database_status(resources: Resources) -> DependencyStatus:
    address = resources.settings.db.address
    try:
        db = await resources.database()
        await asyncio.wait_for(db.ping(), _CHECK_TIMEOUT_S)
    except (DatabaseUnavailableError, TimeoutError) as exc:
        return DependencyStatus("down", address, str(exc) or "timed out")
    return DependencyStatus("up", address)


async def _triton_status(resources: Resources) -> TritonStatus:
    settings = resources.settings.triton
    address = settings.grpc_url
    how_to_start = "start it with `make triton` or set TRITON_HOST/TRITON_GRPC_PORT"
    try:
        ready = await resources.triton.is_server_ready(client_timeout=_CHECK_TIMEOUT_S)
        if not ready:
            return TritonStatus("down", address, f"Triton is not ready; {how_to_start}")
        index = await resources.triton.get_model_repository_index(client_timeout=_CHECK_TIMEOUT_S)
    except Exception as exc:  # tritonclient raises its own error type for every transport failure
        return TritonStatus("down", address, f"Triton unreachable ({exc}); {how_to_start}")
    loaded = sorted(m.name for m in index.models if m.state == "READY")
    known = {served_name(m, tf) for tf in SERVED_TIMEFRAMES for m in FEATURE_MODELS}
    served = tuple(m for m in loaded if m in known)
    try:
        found = await verify_served_models(resources.triton, served, timeout_s=_CHECK_TIMEOUT_S)
    except FeatureSpecMismatchError as exc:
        return TritonStatus("incompatible", address, str(exc), models=loaded)
    timeframes = [tf for tf in SERVED_TIMEFRAMES if found.get(served_name(ENSEMBLE, tf)) == tf]
    return TritonStatus("up", address, models=loaded, timeframes=timeframes)


async def _redis_status(resources: Resources) -> DependencyStatus:
    address = resources.settings.redis.url
    try:
        async with asyncio.timeout(_CHECK_TIMEOUT_S):
            await resources.redis.ping()  # type: ignore[misc]  # redis' stubs: bool | Awaitable
    except (RedisError, OSError, TimeoutError) as exc:
        detail = (
            f"Redis unreachable ({exc or 'timed out'}); each replica serves on its own meanwhile "
            "and job submission answers 503; start it with `make redis` or set REDIS_URL"
        )
        return DependencyStatus("down", address, detail)
    return DependencyStatus("up", address)


async def health_report(resources: Resources) -> HealthReport:
    database, triton, redis = await asyncio.gather(
        _database_status(resources), _triton_status(resources), _redis_status(resources)
    )
    up = database.status == triton.status == redis.status == "up"
    return HealthReport("ok" if up else "degraded", database, triton, redis)


class HealthController(Controller):
    tags = ["health"]  # noqa: RUF012

    @get("/health", summary="Liveness with dependency detail (always 200 while the process runs)")
    async def health(self, resources: NamedDependency[Resources]) -> HealthReport:
        return await health_report(resources)

    @get(
        "/health/ready",
        summary="Readiness: 503 until the database and Triton are both up (Redis is reported, "
        "not required)",
        responses={
            HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(
                data_container=HealthReport,
                generate_examples=False,
                description="Not ready: the report says which dependency is down and why",
            )
        },
    )
    async def ready(self, resources: NamedDependency[Resources]) -> Response[HealthReport]:
        report = await health_report(resources)
        code = HTTP_200_OK if report.ready else HTTP_503_SERVICE_UNAVAILABLE
        return Response(report, status_code=code)
