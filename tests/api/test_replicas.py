"""Two API processes on one Redis, MariaDB and Triton, as behind a load balancer: each bar is
inferred once across both, a WebSocket client on B gets the bar-close message once, and the rate
limit is one budget for both."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import msgspec
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
import websockets

from export.exporter import export_profiles
from orchestrator.devstack.triton import TritonServer
from orchestrator.inference.models import ENSEMBLE
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe, newest_closed
from orchestrator.settings import PROJECT_ROOT, DatabaseSettings
from tests.conftest import (
    TrainedRepository,
    cli_env,
    free_ports,
    next_bar_row,
    serve_triton,
    until,
)

SERVED = (Timeframe.M5, Timeframe.M15)  # the model sets the suite's Triton serves


def _config_parameters(server: TritonServer) -> dict[str, str]:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    config = client.get_model_config(ENSEMBLE, as_json=True)["config"]
    return {k: v["string_value"] for k, v in config.get("parameters", {}).items()}


def _inferences(server: TritonServer) -> int:
    """Rows the ensemble has scored since Triton started (its own statistics)."""
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    stats = client.get_inference_statistics(ENSEMBLE, as_json=True)
    return sum(int(s.get("inference_count", 0)) for s in stats["model_stats"])


def _spawn_api(port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    command = ["-m", "orchestrator", "serve", "--host", "127.0.0.1", "--port", str(port)]
    return subprocess.Popen(
        [sys.executable, *command],
        env=env,
        cwd=PROJECT_ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@asynccontextmanager
async def _replicas(
    db: DatabaseSettings, triton: TritonServer, redis_url: str, **extra: str
) -> AsyncIterator[tuple[str, str]]:
    """Two `python -m orchestrator serve` processes on free ports; their base URLs."""
    ports = free_ports(2)
    env = cli_env(
        db,
        REDIS_URL=redis_url,
        TRITON_GRPC_PORT=str(triton.grpc_port),
        TRITON_HTTP_PORT=str(triton.http_port),
        BAR_POLL_INTERVAL_S="0.05",
        WS_POLL_INTERVAL_S="0.1",
        **extra,
    )
    processes = [_spawn_api(port, env) for port in ports]
    urls = tuple(f"http://127.0.0.1:{p}" for p in ports)
    try:
        async with httpx.AsyncClient(timeout=5) as client:
            for url, process in zip(urls, processes, strict=True):
                await until(
                    lambda u=url: _answers(client, u),  # type: ignore[misc]
                    what=f"the replica at {url} to answer",
                    timeout_s=60,
                    every_s=0.1,
                    abort=lambda p=process: _exited(p),  # type: ignore[misc]
                )
        yield urls[0], urls[1]
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()


async def _answers(client: httpx.AsyncClient, url: str) -> bool:
    try:
        return (await client.get(f"{url}/health")).status_code in (200, 503)
    except httpx.TransportError:
        return False


async def _polls(client: httpx.AsyncClient, urls: tuple[str, ...]) -> list[tuple[int, bool]]:
    """(polls so far, sweeping now) per replica."""
    stats = [(await client.get(f"{url}/api/stats")).json()["bar_close"] for url in urls]
    return [(int(s["polls"]), bool(s["sweeping"])) for s in stats]


def _exited(process: subprocess.Popen[bytes]) -> str | None:
    """Why waiting on a replica is pointless: it exited (with the tail of its stderr)."""
    if process.poll() is None:
        return None
    stderr = process.stderr.read().decode() if process.stderr else ""
    return f"replica exited with {process.returncode}:\n{stderr[-3000:]}"


async def _polled(client: httpx.AsyncClient, urls: tuple[str, ...], times: int = 3) -> None:
    """Until every replica's poller has looked at the bars `times` more times (each look
    schedules what it found) and no sweep is running or queued: whatever those looks found is
    computed. Waits on the pollers' and sweepers' own progress, not on the clock."""
    start = [polls for polls, _ in await _polls(client, urls)]

    async def advanced() -> bool:
        now = await _polls(client, urls)
        return all(n - s >= times and not busy for (n, busy), s in zip(now, start, strict=True))

    await until(advanced, what="every poller to look again", timeout_s=30, every_s=0.1)


async def test_each_bar_is_inferred_once_and_reaches_a_client_on_the_other_replica_once(
    loaded: TrainedRepository,
    clean_db: Database,
    db_settings: DatabaseSettings,
    model_server: TritonServer,
    redis_flushed: str,
) -> None:
    bars = loaded.data[0].bars
    old = bars.index[-1].to_pydatetime()
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    async with (
        _replicas(db_settings, model_server, redis_flushed) as (a, b),
        httpx.AsyncClient(timeout=30) as client,
    ):
        # Both replicas answer for the newest bar (computed once, by whichever claimed it).
        for url in (a, b):
            body = (await client.get(f"{url}/api/predict/BTCUSD")).json()
            assert body["bar_time"] == bars.index[-1].strftime(stamp)
        socket = await websockets.connect(f"{b.replace('http', 'ws')}/ws/BTCUSD")
        first = msgspec.json.decode(await asyncio.wait_for(socket.recv(), 30))
        assert first["type"] == "prediction"
        assert first["bar_time"] == bars.index[-1].strftime(stamp)
        await _polled(client, (a, b))  # both pollers idle: nothing left to compute
        before = _inferences(model_server)

        row = next_bar_row(bars)
        info = {"BTCUSD": SymbolInfo("BTCUSD", "crypto", 0.01, Timeframe.M5)}
        await write_bars(clean_db, row, info, show_progress=False)
        new = row["ts"].iloc[0].to_pydatetime()

        messages = []
        deadline = asyncio.get_running_loop().time() + 30
        while not any(m.get("bar_time") == new.strftime(stamp) for m in messages):
            timeout_s = deadline - asyncio.get_running_loop().time()
            messages.append(msgspec.json.decode(await asyncio.wait_for(socket.recv(), timeout_s)))
        await _polled(client, (a, b))  # a duplicate would have been computed by now
        while True:
            try:
                messages.append(msgspec.json.decode(await asyncio.wait_for(socket.recv(), 0.2)))
            except TimeoutError:
                break
        await socket.close()
        predictions = [m for m in messages if m["type"] == "prediction"]
        assert [m["bar_time"] for m in predictions] == [new.strftime(stamp)]

        # Each served timeframe whose newest closed bar moved is scored once, on one replica.
        moved = sum(
            newest_closed(new, Timeframe.M5, tf) != newest_closed(old, Timeframe.M5, tf)
            for tf in SERVED
        )
        await until(
            lambda: _inferences(model_server) - before >= moved,
            what="each moved timeframe inferred",
            timeout_s=30,
        )
        await _polled(client, (a, b))
        assert _inferences(model_server) - before == moved
        answers = [(await client.get(f"{url}/api/predict/BTCUSD")).json() for url in (a, b)]
        assert answers[0] == answers[1]
        assert answers[0]["bar_time"] == new.strftime(stamp)
        assert _inferences(model_server) - before == moved  # requests were answered, not scored
        stats = [(await client.get(f"{url}/api/stats")).json()["bar_close"] for url in (a, b)]
        assert sum(s["predictions"] for s in stats) >= moved


async def test_the_rate_limit_is_one_budget_across_replicas(
    loaded: TrainedRepository,
    db_settings: DatabaseSettings,
    model_server: TritonServer,
    redis_flushed: str,
) -> None:
    limit = 30
    async with (
        _replicas(db_settings, model_server, redis_flushed, RATE_LIMIT_PER_MINUTE=str(limit)) as (
            a,
            b,
        ),
        httpx.AsyncClient(timeout=30) as client,
    ):
        statuses = []
        for i in range(limit + 10):
            url = a if i % 2 == 0 else b
            response = await client.get(f"{url}/api/history/BTCUSD", params={"limit": 5})
            statuses.append(response.status_code)
        assert statuses[:limit] == [200] * limit
        assert set(statuses[limit:]) == {429}
        limited = await client.get(f"{b}/api/history/BTCUSD", params={"limit": 5})
        assert limited.status_code == 429


async def test_a_job_submitted_on_one_replica_is_polled_to_completion_on_the_other(
    loaded: TrainedRepository,
    db_settings: DatabaseSettings,
    model_server: TritonServer,
    redis_flushed: str,
    tmp_path: Path,
) -> None:
    body = {
        "symbol": "BTCUSD",
        "start_date": "2025-06-10",
        "end_date": "2025-06-20",
        "strategy": "aggressive_filter",
        "params": {"run_as_job": True},
    }
    env = cli_env(
        db_settings,
        REDIS_URL=redis_flushed,
        TRITON_GRPC_PORT=str(model_server.grpc_port),
        TRITON_HTTP_PORT=str(model_server.http_port),
    )
    worker = _spawn_worker(env, tmp_path / "worker.log")
    try:
        async with (
            _replicas(db_settings, model_server, redis_flushed) as (a, b),
            httpx.AsyncClient(timeout=30) as client,
        ):
            submitted = await client.post(f"{a}/api/backtest", json=body)
            assert submitted.status_code == 202, submitted.text
            status_url = f"{b}{submitted.json()['status_url']}"
            state: dict[str, Any] = {}

            async def finished() -> bool:
                nonlocal state
                state = (await client.get(status_url)).json()
                return state["status"] not in ("queued", "running")

            await until(finished, what="the backtest to end", timeout_s=120, every_s=0.1)
            assert state["status"] == "done", state
            assert state["result"]["metrics"]["n_bars"] > 2000  # ten days of 5m bars
            listed = (await client.get(f"{b}/api/backtest", params={"status": "done"})).json()
            assert [item["id"] for item in listed["items"]] == [state["id"]]
    finally:
        worker.terminate()
        worker.wait(20)


def _spawn_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "orchestrator", "worker"],
            env=env,
            cwd=PROJECT_ROOT,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


async def test_both_replicas_serve_each_bar_from_one_version_across_a_promotion_and_rollback(
    loaded: TrainedRepository,
    clean_db: Database,
    db: Database,
    db_settings: DatabaseSettings,
    trained: TrainedRepository,
    redis_flushed: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """A promotion asked of replica A and a rollback asked of replica B: after each, the next
    bar is scored once, and both replicas answer it with the same prediction of the same
    version; the switch reaches both without a restart."""
    root = tmp_path_factory.mktemp("replica-switch-repository")
    shutil.copytree(trained.cpu, root / "cpu", symlinks=True)
    export_profiles(trained.models, root, profiles=("cpu",))
    previous, newest = sorted(
        int(p.name) for p in (root / "cpu" / ENSEMBLE).iterdir() if p.name.isdigit()
    )[-2:]
    async with db.transaction() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM model_version_events")
        await cur.execute("DELETE FROM model_versions")
    admin = {"X-API-Key": "admin-key"}
    servers = serve_triton(root / "cpu", tmp_path_factory, "triton-replica-switch")
    triton = next(servers)
    bars = loaded.data[0].bars
    stamp = "%Y-%m-%dT%H:%M:%SZ"
    try:
        async with (
            _replicas(
                db_settings,
                triton,
                redis_flushed,
                MODEL_REPOSITORY=str(root / "cpu"),
                ADMIN_API_KEY="admin-key",
            ) as (a, b),
            httpx.AsyncClient(timeout=60) as client,
        ):

            async def answers() -> list[dict[str, Any]]:
                return [
                    (await client.get(f"{url}/api/predict/BTCUSD", headers=admin)).json()
                    for url in (a, b)
                ]

            async def both_serve(version: int) -> bool:
                return all(x.get("model_version") == str(version) for x in await answers())

            await until(lambda: both_serve(newest), what="both serving the newest", timeout_s=30)
            path = f"/api/models/{ENSEMBLE}"
            moved = await client.post(
                f"{a}{path}/promote",
                json={"version": previous, "reason": "asked of A"},
                headers=admin,
            )
            assert moved.status_code == 200, moved.text
            # A promotion names the next bar as the first the promoted version answers: the
            # bar already closed stays with the champion it replaced, on both replicas alike.
            parameters = _config_parameters(triton)
            assert parameters["previous_version"] == str(newest)
            first_bar = next_bar_row(bars, minutes=5)["ts"].iloc[0]
            assert pd.Timestamp(parameters["serving_from"]) == first_bar
            assert await both_serve(newest)
            for version, url, move in ((previous, None, None), (newest, b, "rollback")):
                if move is not None:
                    rolled = await client.post(
                        f"{url}{path}/{move}", json={"reason": "asked of B"}, headers=admin
                    )
                    assert rolled.status_code == 200, rolled.text
                    await until(
                        lambda v=version: both_serve(v),  # type: ignore[misc]
                        what=f"both serving v{version}",
                        timeout_s=30,
                    )
                await _polled(client, (a, b))
                before = _inferences(triton)
                row = next_bar_row(bars, minutes=5 * (1 + (version == newest)))
                info = {"BTCUSD": SymbolInfo("BTCUSD", "crypto", 0.01, Timeframe.M5)}
                await write_bars(clean_db, row, info, show_progress=False)
                bar = row["ts"].iloc[0].strftime(stamp)

                async def both_have_the_bar(bar: str = bar) -> bool:
                    return all(x.get("bar_time") == bar for x in await answers())

                await until(both_have_the_bar, what="both answering for the bar", timeout_s=30)
                await _polled(client, (a, b))
                first, second = await answers()
                assert first == second  # one prediction, shared
                assert first["model_version"] == str(version)
                assert _inferences(triton) - before >= 1
    finally:
        next(servers, None)
