"""WS /ws/{symbol}: one computation per new bar fanned out to every client, heartbeats, slow
clients isolated, errors as messages + close codes; against a real uvicorn, MariaDB and Triton."""

from __future__ import annotations

import asyncio
from datetime import datetime
from types import SimpleNamespace
from typing import cast

import msgspec
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
import websockets
from websockets.asyncio.client import ClientConnection

from orchestrator.api.app import create_app
from orchestrator.api.stream import StreamHub
from orchestrator.devstack.triton import TritonServer
from orchestrator.inference.models import ENSEMBLE
from orchestrator.inference.prediction import Prediction
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import ApiSettings, DatabaseSettings
from tests.api.conftest import api_settings, served
from tests.conftest import TrainedRepository

KEY = ("BTCUSD", "5m", "balanced")

# --- the hub on its own: fan-out and slow-client isolation ----------------------------------


def _hub(bars: list[datetime | None], computed: list[str]) -> StreamHub:
    async def last_bar(key: tuple[str, str, str]) -> datetime | None:
        return bars[-1]

    async def compute(key: tuple[str, str, str]) -> bytes:
        computed.append(key[0])
        return f'{{"n": {len(computed)}}}'.encode()

    return StreamHub(last_bar, compute, poll_interval_s=0.01, queue_size=4)


async def test_one_computation_per_new_bar_reaches_every_subscriber() -> None:
    bars: list[datetime | None] = [datetime(2025, 1, 1)]
    computed: list[str] = []
    hub = _hub(bars, computed)
    subscribers = [hub.subscribe(KEY) for _ in range(5)]
    for sub in subscribers:
        assert await asyncio.wait_for(sub.queue.get(), 2) == b'{"n": 1}'
    bars.append(datetime(2025, 1, 1, 0, 5))
    for sub in subscribers:
        assert await asyncio.wait_for(sub.queue.get(), 2) == b'{"n": 2}'
    late = hub.subscribe(KEY)  # a newcomer gets the current message at once
    assert late.queue.get_nowait() == b'{"n": 2}'
    assert computed == ["BTCUSD", "BTCUSD"]
    assert len(hub.feeds) == 1
    await hub.close()
    assert all(sub.queue.get_nowait() is None for sub in subscribers)


async def test_a_client_that_never_reads_loses_only_its_own_old_messages() -> None:
    bars: list[datetime | None] = [datetime(2025, 1, 1)]
    computed: list[str] = []
    hub = _hub(bars, computed)
    slow = hub.subscribe(KEY)
    fast = hub.subscribe(KEY)
    received = []
    for minute in range(1, 11):
        received.append(await asyncio.wait_for(fast.queue.get(), 2))
        bars.append(datetime(2025, 1, 1, 0, minute))
    received.append(await asyncio.wait_for(fast.queue.get(), 2))
    assert received == [f'{{"n": {n}}}'.encode() for n in range(1, 12)]
    # The slow queue holds the newest 4 (its size); the 7 older ones were dropped for it alone.
    assert slow.queue.qsize() == 4
    assert slow.dropped == 7
    assert [slow.queue.get_nowait() for _ in range(4)][-1] == b'{"n": 11}'
    hub.unsubscribe(slow)
    hub.unsubscribe(fast)
    assert hub.feeds == {}  # the watcher stops with its last subscriber
    assert hub.snapshot().messages_dropped == 7


async def test_a_sweeps_predictions_are_published_as_handed_over() -> None:
    """What a sweep hands the hub goes out without the watcher's look-up, once per bar: the
    watcher, waking after it, finds the bar already sent."""
    bars: list[datetime | None] = [datetime(2025, 1, 1)]
    computed: list[str] = []
    rendered: list[datetime] = []
    polled = asyncio.Event()

    async def last_bar(key: tuple[str, str, str]) -> datetime | None:
        polled.set()
        return bars[-1]

    async def compute(key: tuple[str, str, str]) -> bytes:
        computed.append(key[0])
        return b'{"from": "watcher"}'

    async def render(key: tuple[str, str, str], prediction: Prediction) -> bytes:
        rendered.append(prediction.bar_time)
        return f'{{"from": "sweep", "bar": "{prediction.bar_time:%H:%M}"}}'.encode()

    hub = StreamHub(last_bar, compute, render=render, poll_interval_s=0.01)
    sub = hub.subscribe(KEY)
    assert await asyncio.wait_for(sub.queue.get(), 2) == b'{"from": "watcher"}'
    swept = cast(Prediction, SimpleNamespace(symbol="BTCUSD", timeframe="5m", bar_time=None))
    for minute in (5, 10):
        swept.bar_time = datetime(2025, 1, 1, 0, minute)
        hub.deliver([swept, cast(Prediction, SimpleNamespace(symbol="ETHUSD", timeframe="5m"))])
        expected = f'{{"from": "sweep", "bar": "00:{minute:02d}"}}'.encode()
        assert await asyncio.wait_for(sub.queue.get(), 2) == expected
        bars.append(swept.bar_time)
        hub.wake()
    hub.deliver([swept])  # the same bar again: nothing new to send
    for _ in range(3):  # the watcher looks a few more times and finds nothing new either
        polled.clear()
        hub.wake()
        await asyncio.wait_for(polled.wait(), 2)
    assert sub.queue.empty()
    assert computed == ["BTCUSD"]
    assert rendered == [datetime(2025, 1, 1, 0, 5), datetime(2025, 1, 1, 0, 10)]
    assert hub.snapshot().delivered == 2
    await hub.close()


async def test_a_failing_computation_is_reported_once_and_retried() -> None:
    calls = 0

    async def last_bar(key: tuple[str, str, str]) -> datetime | None:
        return datetime(2025, 1, 1)

    async def compute(key: tuple[str, str, str]) -> bytes:
        nonlocal calls
        calls += 1
        if calls < 4:
            raise ConnectionError("triton is restarting")
        return b'{"ok": true}'

    hub = StreamHub(last_bar, compute, poll_interval_s=0.01)
    sub = hub.subscribe(KEY)
    first = msgspec.json.decode(await asyncio.wait_for(sub.queue.get(), 2))
    assert first["type"] == "error"
    assert first["status"] == 500
    assert await asyncio.wait_for(sub.queue.get(), 2) == b'{"ok": true}'  # no repeated errors
    await hub.close()


# --- end to end: uvicorn + websockets clients ------------------------------------------------


async def _next(ws: ClientConnection, kind: str, timeout_s: float = 30.0) -> dict[str, object]:
    """The next message of `kind`, skipping heartbeats."""
    while True:
        message = msgspec.json.decode(await asyncio.wait_for(ws.recv(), timeout_s))
        assert isinstance(message, dict)
        if message["type"] == kind:
            return message
        assert message["type"] == "heartbeat", message


def _ensemble_requests(server: TritonServer) -> int:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    stats = client.get_inference_statistics(ENSEMBLE, as_json=True)
    return sum(int(s.get("inference_count", 0)) for s in stats["model_stats"])


async def test_new_bar_reaches_every_client_from_one_computation(
    loaded: TrainedRepository,
    clean_db: Database,
    db_settings: DatabaseSettings,
    model_server: TritonServer,
    redis_flushed: str,
) -> None:
    api = ApiSettings(ws_poll_interval_s=0.1, ws_heartbeat_s=0.5, ws_queue_size=4)
    app = create_app(api_settings(db_settings, model_server, redis_flushed, api=api))
    bars = loaded.data[0].bars
    async with served(app) as port:
        url = f"ws://127.0.0.1:{port}/ws/btcusd"
        before = _ensemble_requests(model_server)
        readers = [await websockets.connect(url) for _ in range(3)]
        readers.append(await websockets.connect(url + "?strategy=conservative"))
        never_reads = await websockets.connect(url, max_queue=1)
        for ws in readers:
            first = await _next(ws, "prediction")
            assert first["bar_time"] == bars.index[-1].strftime("%Y-%m-%dT%H:%M:%SZ")
            assert first["symbol"] == "BTCUSD"
        # A new bar lands in the store: every client gets the prediction for it.
        last = bars.iloc[-1]
        new_ts = bars.index[-1] + pd.Timedelta(minutes=5)
        row = pd.DataFrame(
            {
                "ts": [new_ts],
                "symbol": ["BTCUSD"],
                "timeframe": ["5m"],
                "open": [last["close"]],
                "high": [last["close"] * 1.002],
                "low": [last["close"] * 0.999],
                "close": [last["close"] * 1.001],
                "volume": [10.0],
            }
        )
        info = {"BTCUSD": SymbolInfo("BTCUSD", "crypto", 0.01, Timeframe.M5)}
        await write_bars(clean_db, row, info, show_progress=False)
        for ws in readers:
            update = await _next(ws, "prediction")
            assert update["bar_time"] == new_ts.strftime("%Y-%m-%dT%H:%M:%SZ")
            prediction = update["prediction"]
            signal = update["signal"]
            assert isinstance(prediction, dict)
            assert isinstance(signal, dict)
            assert prediction["close"] == pytest.approx(float(row["close"].iloc[0]), rel=1e-6)
            assert signal["signal"]["entry"] == pytest.approx(prediction["close"])
            assert len(prediction["horizons"]) == 4
            expected = "conservative" if ws is readers[-1] else "balanced"
            assert signal["strategy"]["name"] == expected
        await _next(readers[0], "heartbeat", timeout_s=5)
        # Two bars, five clients on two strategies: two ensemble requests, not ten.
        assert _ensemble_requests(model_server) - before == 2
        stream = app.state.stream.snapshot()
        assert stream.clients == 5
        assert stream.feeds == 2
        # One message per bar per strategy feed, each either handed over by a sweep or looked up
        # by a watcher that woke first (which one wins is a race, the count is not).
        assert stream.computations + stream.delivered == 4
        for ws in readers:
            await ws.close()
        # never_reads is still open: shutdown must close it rather than wait for it (served()
        # fails if the server is not down within its shutdown timeout) ...

    # ... with a going-away close frame behind the messages it never read.
    async def drained() -> list[str | bytes]:  # ends when the close frame is read
        return [message async for message in never_reads]

    assert await asyncio.wait_for(drained(), 30)
    assert never_reads.close_code == 1001


async def test_unknown_symbol_and_auth_close_with_a_reason(
    loaded: TrainedRepository,
    db_settings: DatabaseSettings,
    model_server: TritonServer,
    redis_flushed: str,
) -> None:
    app = create_app(
        api_settings(
            db_settings, model_server, redis_flushed, api=ApiSettings(internal_api_key="k")
        )
    )
    async with served(app) as port:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/NOPEUSD?token=k") as ws:
            message = msgspec.json.decode(await asyncio.wait_for(ws.recv(), 10))
            assert message["type"] == "error"
            assert message["status"] == 404
            assert message["error"]["field"] == "symbol"
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 4404
        async with websockets.connect(
            f"ws://127.0.0.1:{port}/ws/BTCUSD?token=k&strategy=yolo"
        ) as ws:
            message = msgspec.json.decode(await asyncio.wait_for(ws.recv(), 10))
            assert message["error"]["field"] == "strategy"
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 4400
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/BTCUSD") as ws:
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
            assert ws.close_code == 4401
            assert ws.close_reason is not None
            assert "missing credentials" in ws.close_reason
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws/BTCUSD?token=k") as ws:
            assert (await _next(ws, "prediction"))["symbol"] == "BTCUSD"
