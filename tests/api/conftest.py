"""Fixtures shared by the API tests: settings for the suite's servers, a loaded store, and the
app served by a real uvicorn (WebSockets need a real server and client)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import uvicorn
from litestar import Litestar

from orchestrator.devstack.triton import TritonServer
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import ApiSettings, DatabaseSettings, Settings, TritonSettings
from tests.conftest import TrainedRepository, free_ports


def api_settings(
    db: DatabaseSettings,
    server: TritonServer,
    grpc_port: int | None = None,
    api: ApiSettings | None = None,
) -> Settings:
    triton = TritonSettings(
        http_port=server.http_port,
        grpc_port=grpc_port or server.grpc_port,
        metrics_port=server.metrics_port,
        request_timeout_s=5.0,
    )
    return Settings(db=db, triton=triton, api=api or ApiSettings())


@pytest.fixture
async def loaded(clean_db: Database, trained: TrainedRepository) -> TrainedRepository:
    """BTCUSD with the training bars, and SHORTUSD with too few bars to predict."""
    item = trained.data[0]
    frame = item.bars.reset_index().assign(symbol=item.symbol, timeframe="5m")
    info = {item.symbol: SymbolInfo(item.symbol, "crypto", 0.01, Timeframe.M5)}
    await write_bars(clean_db, frame, info, show_progress=False)
    short = frame.iloc[:200].assign(symbol="SHORTUSD")
    await write_bars(
        clean_db, short, {"SHORTUSD": SymbolInfo("SHORTUSD", "crypto", 0.01)}, show_progress=False
    )
    return trained


@asynccontextmanager
async def served(app: Litestar, shutdown_timeout_s: float = 20.0) -> AsyncIterator[int]:
    """The app on a free port in this event loop; yields the port, then shuts it down."""
    (port,) = free_ports(1)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
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
        await asyncio.wait_for(task, shutdown_timeout_s)
