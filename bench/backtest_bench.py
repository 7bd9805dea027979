"""A whole backtest through Triton: 215,699 generated BTCUSD 5-minute bars in the store, scored by
the committed default models (model_repository/cpu) on a tritonserver started here, then
simulated. Times every phase of a cold run (empty prediction cache) and of a cached re-run.

Usage: .venv/bin/python bench/backtest_bench.py [--bars N] [--in-flight N] [--batch-size N]
Needs the Triton environment (make triton-env); uses the database MYSQL_DATABASE_BENCH
(default trading_bench) on the configured server, or the private MariaDB (started if needed).
Writes bench/results/backtest.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd
import tritonclient.grpc.aio as grpc_aio

from orchestrator.backtest.predictions import DEFAULT_IN_FLIGHT, MAX_BATCH, warmup_bars
from orchestrator.backtest.report import BacktestResult
from orchestrator.backtest.request import BacktestRequest
from orchestrator.backtest.runner import run_backtest
from orchestrator.demo.generator import MARKETS, generate_bars
from orchestrator.devstack.mariadb import ensure_database
from orchestrator.devstack.process import free_ports
from orchestrator.devstack.triton import TritonServer
from orchestrator.inference.client import SignalModels
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.migrate import migrate
from orchestrator.marketdata.store import BarStore, UnknownSymbolError
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import PROJECT_ROOT, RUN_DIR, DatabaseSettings

RESULTS = Path(__file__).parent / "results" / "backtest.json"
SYMBOL = "BTCUSD"
TARGET_S = 60.0


async def load_store(db: Database, bars: pd.DataFrame) -> float:
    """Writes the bars unless the store already holds exactly them; returns seconds spent."""
    store = BarStore(db)
    try:
        held = await store.bars_between(
            SYMBOL, Timeframe.M5, bars.index[0], bars.index[-1] + timedelta(minutes=5)
        )
    except UnknownSymbolError:  # not stored yet
        held = bars.iloc[:0]
    if len(held) == len(bars) and held.index.equals(bars.index):
        return 0.0
    started = time.perf_counter()
    info = {SYMBOL: MARKETS[SYMBOL].symbol_info()}
    frame = bars.reset_index().assign(symbol=SYMBOL, timeframe="5m")
    await write_bars(db, frame, info, show_progress=False)
    return time.perf_counter() - started


def phases(result: BacktestResult, wall_s: float) -> dict[str, Any]:
    t = result.timings
    return {
        "wall_s": round(wall_s, 3),
        "loading_s": round(t.loading_s, 3),
        "features_s": round(t.features_s, 3),
        "inference_s": round(t.inference_s, 3),
        "simulation_s": round(t.simulation_s, 3),
        "total_s": round(t.total_s, 3),
        "cached": result.cached,
        "bars_per_s": round(result.bars / wall_s),
    }


async def bench(
    args: argparse.Namespace, settings: DatabaseSettings, grpc_port: int
) -> dict[str, Any]:
    db = await Database.connect(settings)
    client = grpc_aio.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    try:
        models = SignalModels(client, timeout_s=60.0)
        warmup = warmup_bars(await models.spec())  # bars before the first backtested bar
        bars = generate_bars(SYMBOL, bars=args.bars + warmup)
        await migrate(db)
        store_s = await load_store(db, bars)
        request = BacktestRequest(
            symbol=SYMBOL,
            start=bars.index[warmup].to_pydatetime(),
            end=bars.index[-1].to_pydatetime() + timedelta(minutes=5),
            strategy="balanced",
            fee_rate=0.0002,
            slippage=0.0001,
        )
        runs = []
        with tempfile.TemporaryDirectory() as cache:
            for label in ("cold", "cached"):
                started = time.perf_counter()
                result = await run_backtest(
                    request,
                    db=db,
                    models=models,
                    cache_dir=Path(cache),
                    batch_size=args.batch_size,
                    in_flight=args.in_flight,
                )
                wall = time.perf_counter() - started
                runs.append({"run": label, **phases(result, wall)})
                print(
                    f"{label:6s}: {wall:6.1f} s wall  (loading {result.timings.loading_s:.1f} s, "
                    f"features {result.timings.features_s:.1f} s, inference "
                    f"{result.timings.inference_s:.1f} s, simulation "
                    f"{result.timings.simulation_s:.2f} s)  {result.bars / wall:,.0f} bars/s",
                    flush=True,
                )
        stats = result.metrics.overall
        return {
            "bars": result.bars,
            "warmup_bars": result.warmup_bars,
            "scored_bars": result.predicted_bars,
            "signals": result.signals,
            "trades": stats.n_trades,
            "total_r": round(stats.total_r, 3),
            "model_version": result.model_version,
            "store_load_s": round(store_s, 3),
            "runs": runs,
        }
    finally:
        await client.close()
        await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bars", type=int, default=215_699, help="bars in the backtested range")
    parser.add_argument("--in-flight", type=int, default=DEFAULT_IN_FLIGHT)
    parser.add_argument("--batch-size", type=int, default=MAX_BATCH)
    args = parser.parse_args()

    base = DatabaseSettings.from_env()
    settings = msgspec.structs.replace(
        base, database=os.environ.get("MYSQL_DATABASE_BENCH", "trading_bench")
    )
    print(ensure_database(settings))
    http, grpc, metrics = free_ports(3)
    repository = PROJECT_ROOT / "model_repository" / "cpu"
    server = TritonServer(
        repository, http, grpc, metrics, run_dir=RUN_DIR / "bench", name="triton-backtest-bench"
    )
    started = time.perf_counter()
    server.start()
    print(f"tritonserver ready in {time.perf_counter() - started:.1f} s (gRPC {grpc})")
    try:
        measured = asyncio.run(bench(args, settings, grpc))
    finally:
        server.stop()
    cold = measured["runs"][0]["wall_s"]
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus",
        "python": platform.python_version(),
        "models": str(repository.relative_to(PROJECT_ROOT)),
        "batch_size": args.batch_size,
        "in_flight": args.in_flight,
        "timed": "run_backtest: store -> features -> Triton signal_ensemble -> simulate/metrics",
        "target_s": TARGET_S,
        "meets_target": cold <= TARGET_S,
        **measured,
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    temporary = RESULTS.with_suffix(".tmp")
    temporary.write_text(json.dumps(result, indent=2) + "\n")
    os.replace(temporary, RESULTS)
    print(f"cold run {cold:.1f} s (target <= {TARGET_S:.0f} s); wrote {RESULTS}")


if __name__ == "__main__":
    main()
