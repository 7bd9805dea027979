"""/api/predict benchmark: warm cache and cold (a new bar before every request) throughput and
p50/p99 at concurrency 1/16/64, and the orchestrator's overhead over the raw Triton call.

Starts its own tritonserver (committed cpu models) and `python -m orchestrator serve` on free
ports against the configured database (`make db`), with 64 benchmark symbols it removes after.
Usage: make bench-predict   (or .venv/bin/python -m bench.predict_bench [--seconds S])
Writes bench/results/predict.json and bench/results/predict_latency.png.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx
import matplotlib
import numpy as np
import pandas as pd
import tritonclient.grpc.aio as grpc_aio

from orchestrator.demo.generator import generate_bars
from orchestrator.devstack.process import free_ports
from orchestrator.devstack.triton import TritonServer
from orchestrator.features.online import inputs_for_latest, required_bars
from orchestrator.inference.client import SignalModels
from orchestrator.inference.models import ENSEMBLE
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import PROJECT_ROOT, DatabaseSettings

matplotlib.use("Agg")
import matplotlib.pyplot as plt

CONCURRENCY = (1, 16, 64)
SYMBOLS = [f"BENCHP{i:02d}" for i in range(max(CONCURRENCY))]
RESULTS = Path(__file__).parent / "results"
REPOSITORY = PROJECT_ROOT / "model_repository" / "cpu"


def _line(label: str, concurrency: int, s: dict[str, float]) -> str:
    return (
        f"{label:10s} c={concurrency:2d}  {s['throughput_per_s']:8.1f} req/s  "
        f"p50 {s['p50_ms']:7.2f} ms  p99 {s['p99_ms']:7.2f} ms"
    )


def _summary(latencies_s: list[float], wall_s: float) -> dict[str, float]:
    ms = np.asarray(latencies_s) * 1e3
    return {
        "requests": len(ms),
        "throughput_per_s": len(ms) / wall_s,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


async def _closed_loop(
    call: Callable[[int], Awaitable[None]], concurrency: int, seconds: float
) -> dict[str, float]:
    """`concurrency` workers calling back to back for `seconds`."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await call(k)
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return _summary(latencies, time.perf_counter() - started)


async def _seed(db: Database) -> dict[str, pd.DataFrame]:
    base = generate_bars("BTCUSD", bars=900, seed=5)
    frames, info = [], {}
    for symbol in SYMBOLS:
        frames.append(base.reset_index().assign(symbol=symbol, timeframe="5m"))
        info[symbol] = SymbolInfo(symbol, "crypto", 0.01, Timeframe.M5, "predict benchmark")
    await write_bars(db, pd.concat(frames, ignore_index=True), info, show_progress=False)
    return {s: base.copy() for s in SYMBOLS}


async def _append_bar(db: Database, history: dict[str, pd.DataFrame], symbols: list[str]) -> None:
    rows = []
    for symbol in symbols:
        bars = history[symbol]
        last = float(bars["close"].iloc[-1])
        ts = bars.index[-1] + pd.Timedelta(minutes=5)
        move = 1 + np.random.default_rng(len(bars)).normal(0, 0.001)
        bar = {
            "open": last,
            "high": max(last, last * move) * 1.0005,
            "low": min(last, last * move) * 0.9995,
            "close": round(last * move, 2),
            "volume": 3.0,
        }
        history[symbol] = pd.concat(
            [bars, pd.DataFrame([bar], index=pd.DatetimeIndex([ts], name="ts"))]
        )
        rows.append({"ts": ts, "symbol": symbol, "timeframe": "5m", **bar})
    info = {s: SymbolInfo(s, "crypto", 0.01, Timeframe.M5) for s in symbols}
    await write_bars(db, pd.DataFrame(rows), info, show_progress=False)


async def _measure(api: str, grpc_url: str, seconds: float, db: Database) -> dict[str, object]:
    history = await _seed(db)
    results: dict[str, object] = {"warm": {}, "cold": {}, "raw_triton": {}}
    async with httpx.AsyncClient(
        base_url=api, timeout=60, limits=httpx.Limits(max_connections=128)
    ) as http:

        async def predict(symbol: str) -> None:
            response = await http.get(f"/api/predict/{symbol}")
            if response.status_code != 200:
                raise RuntimeError(f"{response.status_code}: {response.text}")

        await predict(SYMBOLS[0])  # loads the spec, warms the caches
        for c in CONCURRENCY:
            warm = await _closed_loop(lambda _: predict(SYMBOLS[0]), c, seconds)
            results["warm"][str(c)] = warm  # type: ignore[index]
            print(_line("warm", c, warm))

        for c in CONCURRENCY:
            latencies: list[float] = []
            busy = 0.0
            rounds = max(3, int(seconds * 4 / max(1, c // 8)))
            before = (await http.get("/api/stats")).json()["cache_misses"]
            for _ in range(rounds):
                await _append_bar(db, history, SYMBOLS[:c])  # every symbol's cache entry is stale

                async def timed(symbol: str, into: list[float] = latencies) -> None:
                    t0 = time.perf_counter()
                    await predict(symbol)
                    into.append(time.perf_counter() - t0)

                t0 = time.perf_counter()
                await asyncio.gather(*(timed(s) for s in SYMBOLS[:c]))
                busy += time.perf_counter() - t0
            misses = (await http.get("/api/stats")).json()["cache_misses"] - before
            cold = _summary(latencies, busy) | {"cache_misses": misses}
            results["cold"][str(c)] = cold  # type: ignore[index]
            print(_line("cold", c, cold) + f"  cache misses {misses}/{len(latencies)}")

    client = grpc_aio.InferenceServerClient(grpc_url)
    try:
        spec = await SignalModels(client, 60.0).spec()
        inputs = inputs_for_latest(history[SYMBOLS[0]].iloc[-required_bars(spec) :], spec)
        tensors = []
        for name, array in (("SEQ", inputs.seq), ("TAB", inputs.tab), ("CTX", inputs.ctx)):
            tensor = grpc_aio.InferInput(name, list(array.shape), "FP32")
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)

        async def raw(_: int) -> None:
            await client.infer(ENSEMBLE, tensors)

        for c in CONCURRENCY:
            summary = await _closed_loop(raw, c, seconds)
            results["raw_triton"][str(c)] = summary  # type: ignore[index]
            print(_line("raw triton", c, summary))
    finally:
        await client.close()
    return results


def _plot(results: dict[str, dict[str, dict[str, float]]], path: Path) -> None:
    fig, (lat, thr) = plt.subplots(1, 2, figsize=(11, 4))
    for mode, style in (("warm", "o-"), ("cold", "s-"), ("raw_triton", "^--")):
        xs = [int(c) for c in results[mode]]
        lat.plot(xs, [results[mode][str(c)]["p50_ms"] for c in xs], style, label=f"{mode} p50")
        lat.plot(
            xs, [results[mode][str(c)]["p99_ms"] for c in xs], style, alpha=0.4, label=f"{mode} p99"
        )
        thr.plot(xs, [results[mode][str(c)]["throughput_per_s"] for c in xs], style, label=mode)
    for ax, label in ((lat, "latency (ms)"), (thr, "requests/s")):
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrency")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("/api/predict: warm cache, cold (new bar each request), raw Triton ensemble")
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=110)
    os.replace(tmp, path)


async def _cleanup(db: Database) -> None:
    async with db.transaction() as conn, conn.cursor() as cur:
        marks = ",".join(["%s"] * len(SYMBOLS))
        await cur.execute(f"DELETE FROM bars WHERE symbol IN ({marks})", SYMBOLS)
        await cur.execute(f"DELETE FROM symbols WHERE symbol IN ({marks})", SYMBOLS)


async def _run(seconds: float, api_port: int, grpc_port: int) -> dict[str, object]:
    db = await Database.connect(DatabaseSettings.from_env())
    try:
        return await _measure(f"http://127.0.0.1:{api_port}", f"127.0.0.1:{grpc_port}", seconds, db)
    finally:
        await _cleanup(db)
        await db.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=6.0, help="per warm / raw measurement")
    args = parser.parse_args()
    http_port, grpc_port, metrics_port, api_port = free_ports(4)
    triton = TritonServer(
        REPOSITORY, http_port, grpc_port, metrics_port, name="triton-bench-predict"
    )
    triton.start()
    env = dict(
        os.environ,
        API_HOST="127.0.0.1",
        API_PORT=str(api_port),
        TRITON_HOST="127.0.0.1",
        TRITON_HTTP_PORT=str(http_port),
        TRITON_GRPC_PORT=str(grpc_port),
        TRITON_METRICS_PORT=str(metrics_port),
        RATE_LIMIT_PER_MINUTE="100000000",
        INTERNAL_API_KEY="",
        JWT_SECRET="",
    )
    api = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "serve"], env=env, stdout=subprocess.DEVNULL
    )
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{api_port}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.2)
        results = asyncio.run(_run(args.seconds, api_port, grpc_port))
    finally:
        api.terminate()
        api.wait(20)
        triton.stop()
    overhead = {
        str(c): {
            "cold_minus_triton_p50_ms": results["cold"][str(c)]["p50_ms"]  # type: ignore[index]
            - results["raw_triton"][str(c)]["p50_ms"],  # type: ignore[index]
            "warm_p50_ms": results["warm"][str(c)]["p50_ms"],  # type: ignore[index]
        }
        for c in CONCURRENCY
    }
    record = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "seconds_per_point": args.seconds,
        **results,
        "overhead": overhead,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS / ".predict.json.tmp"
    tmp.write_text(json.dumps(record, indent=2))
    tmp.replace(RESULTS / "predict.json")
    _plot(results, RESULTS / "predict_latency.png")  # type: ignore[arg-type]
    for c in CONCURRENCY:
        o = overhead[str(c)]
        print(
            f"overhead c={c:2d}: cold p50 - raw Triton p50 = {o['cold_minus_triton_p50_ms']:.2f} ms"
        )
    print(f"results in {RESULTS / 'predict.json'} and predict_latency.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
