"""The gateway's side of the contract: a real Express app (MLGatewayService with axios, the 503
mapping, a WebSocket proxy) in front of the live engine, MariaDB and tritonserver."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pandas as pd
import pytest
import websockets

from orchestrator.devstack.triton import TritonServer
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import DatabaseSettings
from tests.conftest import TrainedRepository, append_bar, serve_triton, until
from tests.gateway.conftest import API_KEY, EngineProcess, start_engine, start_gateway

HEADERS = {"X-API-Key": API_KEY}


@pytest.fixture
def engine(
    loaded: TrainedRepository,
    db_settings: DatabaseSettings,
    model_server: TritonServer,
    redis_flushed: str,
    tmp_path: Path,
) -> Iterator[EngineProcess]:
    yield from start_engine(db_settings, model_server, redis_flushed, tmp_path)


@pytest.fixture
def gateway(gateway_build: Path, engine: EngineProcess, tmp_path: Path) -> Iterator[str]:
    yield from start_gateway(gateway_build, engine.url, tmp_path)


def _next_bar(bars: pd.DataFrame) -> pd.DataFrame:
    last = float(bars["close"].iloc[-1])
    return pd.DataFrame(
        {
            "ts": [bars.index[-1] + pd.Timedelta(minutes=5)],
            "symbol": ["BTCUSD"],
            "timeframe": ["5m"],
            "open": [last],
            "high": [last * 1.001],
            "low": [last * 0.998],
            "close": [last * 0.999],
            "volume": [5.0],
        }
    )


async def test_rest_through_the_gateway_equals_the_engine(
    gateway: str, engine: EngineProcess, loaded: TrainedRepository
) -> None:
    bars = loaded.data[0].bars
    async with httpx.AsyncClient(timeout=30) as http:
        for path in (
            "predict/BTCUSD?horizon=all",
            "signals/BTCUSD?timeframe=5m&strategy=aggressive_filter",
            "signals/BTCUSD?tp=2&sl=1&horizon=swing&side=short",
            "indicators/BTCUSD?indicators=rsi,macd,atr&limit=50",
            "history/BTCUSD?limit=500&timeframe=5m",
        ):
            via_gateway = await http.get(f"{gateway}/api/ml/{path}")
            direct = await http.get(f"{engine.url}/api/{path}", headers=HEADERS)
            assert via_gateway.status_code == 200, via_gateway.text
            assert via_gateway.json() == direct.json(), path
        prediction = (await http.get(f"{gateway}/api/ml/predict/BTCUSD")).json()
        assert prediction["close"] == pytest.approx(float(bars["close"].iloc[-1]))
        assert [h["horizon"] for h in prediction["horizons"]] == [
            "scalping",
            "intraday",
            "swing",
            "position",
        ]
        assert prediction["direction"] in ("long", "short")
        history = (await http.get(f"{gateway}/api/ml/history/BTCUSD?limit=500")).json()
        assert len(history["bars"]) == 500
        signal = (await http.get(f"{gateway}/api/ml/signals/BTCUSD")).json()
        assert signal["signal"]["entry"] == pytest.approx(prediction["close"])

        # Engine errors keep their status and body through the gateway.
        unknown = await http.get(f"{gateway}/api/ml/predict/NOPEUSD")
        assert unknown.status_code == 404
        assert unknown.json()["field"] == "symbol"
        bad = await http.get(f"{gateway}/api/ml/predict/BTCUSD?horizon=weekly")
        assert bad.status_code == 400
        assert bad.json()["field"] == "horizon"
        short = await http.get(f"{gateway}/api/ml/predict/SHORTUSD")
        assert short.status_code == 422
        assert "bars" in short.json()["message"]


async def test_stream_through_the_gateway_after_a_new_bar(
    gateway: str, clean_db: Database, loaded: TrainedRepository
) -> None:
    bars = loaded.data[0].bars
    url = gateway.replace("http", "ws") + "/ws/BTCUSD"
    async with websockets.connect(url) as ws:

        async def next_prediction() -> dict[str, object]:
            while True:
                message = msgspec.json.decode(await asyncio.wait_for(ws.recv(), 60))
                if message["type"] == "prediction":
                    return dict(message)

        first = await next_prediction()
        assert first["bar_time"] == bars.index[-1].strftime("%Y-%m-%dT%H:%M:%SZ")
        row = _next_bar(bars)
        info = {"BTCUSD": SymbolInfo("BTCUSD", "crypto", 0.01, Timeframe.M5)}
        await write_bars(clean_db, row, info, show_progress=False)
        update = await next_prediction()
        assert update["bar_time"] == row["ts"].iloc[0].strftime("%Y-%m-%dT%H:%M:%SZ")
        prediction = update["prediction"]
        assert isinstance(prediction, dict)
        assert prediction["close"] == pytest.approx(float(row["close"].iloc[0]))


async def test_triton_stopped_or_engine_down_is_503_at_the_gateway(
    loaded: TrainedRepository,
    clean_db: Database,
    db_settings: DatabaseSettings,
    redis_flushed: str,
    gateway_build: Path,
    tmp_path_factory: pytest.TempPathFactory,
    tmp_path: Path,
) -> None:
    servers = serve_triton(loaded.cpu, tmp_path_factory, "triton-stopped")
    triton = next(servers)
    engines = start_engine(db_settings, triton, redis_flushed, tmp_path)
    engine = next(engines)
    gateways = start_gateway(gateway_build, engine.url, tmp_path)
    gateway = next(gateways)
    try:
        async with httpx.AsyncClient(timeout=40) as http:
            ok = await http.get(f"{gateway}/api/ml/predict/BTCUSD")
            assert ok.status_code == 200, ok.text
            triton.stop()

            # The newest bar's prediction was computed before Triton went away: still served,
            # also once the engine's served-version read has expired and found Triton gone
            # (the engine counts those answers).
            async def served_while_down() -> bool:
                cached = await http.get(f"{gateway}/api/ml/predict/BTCUSD")
                assert cached.status_code == 200, cached.text
                assert cached.json() == ok.json()
                stats = await http.get(f"{engine.url}/api/stats", headers=HEADERS)
                return bool(stats.json()["cache_hits_while_models_down"])

            await until(served_while_down, what="an answer served while Triton is down")
            # A new bar needs inference: 503 at the gateway.
            await append_bar(clean_db, loaded.data[0].bars)
            down = await http.get(f"{gateway}/api/ml/predict/BTCUSD")
            assert down.status_code == 503
            assert down.json()["error"] == "ML service unavailable"
            assert down.json()["message"]
            engine.stop()
            gone = await http.get(f"{gateway}/api/ml/signals/BTCUSD")
            assert gone.status_code == 503
            assert gone.json() == {
                "error": "ML service unavailable",
                "message": "ML engine unreachable: ECONNREFUSED",
            }
    finally:
        for generator in (gateways, engines, servers):
            generator.close()
