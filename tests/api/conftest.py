"""Fixtures shared by the API tests: settings for the suite's servers, a test client of the app
over them (modules that need another app override `client`), and the app served by a real
uvicorn (WebSockets need a real server and client)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from litestar import Litestar
from litestar.testing import AsyncTestClient

from orchestrator.api.app import create_app
from orchestrator.api.server import GracefulServer
from orchestrator.devstack.triton import TritonServer
from orchestrator.settings import (
    ApiSettings,
    DatabaseSettings,
    RedisSettings,
    Settings,
    TritonSettings,
)
from tests.conftest import free_ports


def api_settings(
    db: DatabaseSettings,
    server: TritonServer,
    redis_url: str,
    grpc_port: int | None = None,
    api: ApiSettings | None = None,
) -> Settings:
    triton = TritonSettings(
        http_port=server.http_port,
        grpc_port=grpc_port or server.grpc_port,
        metrics_port=server.metrics_port,
        request_timeout_s=5.0,
    )
    return Settings(
        db=db, triton=triton, api=api or ApiSettings(), redis=RedisSettings(url=redis_url)
    )


@pytest.fixture
async def client(
    db_settings: DatabaseSettings, model_server: TritonServer, redis_flushed: str
) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    """The app over the suite's MariaDB, Triton and Redis."""
    async with AsyncTestClient(
        create_app(api_settings(db_settings, model_server, redis_flushed))
    ) as test_client:
        yield test_client


# The uvicorn server behind each port `served` yields: tests wait on its request count.
SERVERS: dict[int, GracefulServer] = {}


@asynccontextmanager
async def served(app: Litestar, shutdown_timeout_s: float = 20.0) -> AsyncIterator[int]:
    """The app on a free port in this event loop; yields the port, then shuts it down."""
    (port,) = free_ports(1)
    server = GracefulServer(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    SERVERS[port] = server
    task = asyncio.create_task(server.serve())
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError("uvicorn stopped before it started")
        await asyncio.sleep(0.02)
    try:
        yield port
    finally:
        server.should_exit = True
        try:
            await asyncio.wait_for(task, shutdown_timeout_s)
        finally:
            del SERVERS[port]
