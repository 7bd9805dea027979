"""The orchestration of one run: start Triton, seed the symbols, spawn the engine and the
baseline, run the chosen parts in order, and always clean up (servers stopped, benchmark symbols
removed), also on Ctrl-C or SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

from bench.serving.client import Http
from bench.serving.common import (
    BACKTEST_ROWS,
    EXTRA_BARS,
    HTTP_PARTS,
    MODEL_PARTS,
    N_MAX,
    REPOSITORY,
    VERSION_DIR,
    Json,
    log,
)
from bench.serving.market import BarWriter, delete_symbols, seed, symbol_names
from bench.serving.phases import agreement, barrier_phase, cold_phase, sweep_phase, warm_phase
from bench.serving.services import Service, paused, spawn_service, wait_idle, wait_serving
from bench.serving.triton import (
    Tensors,
    backtest_phase,
    batching_off,
    batching_one_instance,
    ceiling,
    feature_rows,
    perf_sweep,
    write_perf_data,
)
from orchestrator.devstack import process
from orchestrator.devstack.process import free_ports
from orchestrator.devstack.triton import TritonServer
from orchestrator.marketdata.db import Database
from orchestrator.settings import DatabaseSettings


async def run(args: argparse.Namespace, parts: list[str]) -> Json:
    """SIGTERM cancels this task like Ctrl-C does, so the finally block always cleans up."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    results: Json = {}
    settings = DatabaseSettings.from_env()
    symbols = symbol_names(args.symbols)
    http_port, grpc_port, metrics_port, engine_port, baseline_port = free_ports(5)
    triton = TritonServer(
        REPOSITORY, http_port, grpc_port, metrics_port, name="triton-bench-serving"
    )
    services: list[Service] = []
    clients: dict[str, Http] = {}
    db = await Database.connect(settings)
    writer: BarWriter | None = None
    tensors: Tensors | None = None
    triton_start = asyncio.create_task(asyncio.to_thread(triton.start))
    try:
        book = None
        if HTTP_PARTS & set(parts):
            from orchestrator.features.online import required_bars
            from orchestrator.features.spec import FeatureSpec

            bars = required_bars(FeatureSpec.load(VERSION_DIR / "feature_spec.json")) + EXTRA_BARS
            log(f"seeding {len(symbols)} symbols x {bars} 5m bars (while Triton starts)")
            await delete_symbols(db, symbol_names(N_MAX))  # leftovers of an interrupted run
            book = await seed(db, symbols, bars)
            log("seeded")
        log("waiting for tritonserver (cpu profile)")
        await triton_start
        log(f"tritonserver ready (log {triton.log_path})")
        roots = [pid for pid in (process.read_pid(triton.pid_path),) if pid]

        if book is not None:
            env = dict(
                os.environ,
                PYTHONUNBUFFERED="1",
                API_HOST="127.0.0.1",
                API_PORT=str(engine_port),
                TRITON_HOST="127.0.0.1",
                TRITON_HTTP_PORT=str(http_port),
                TRITON_GRPC_PORT=str(grpc_port),
                TRITON_METRICS_PORT=str(metrics_port),
                RATE_LIMIT_PER_MINUTE="1000000000",
                # Its own key space: cached predictions of an earlier run's data never answer.
                REDIS_KEY_PREFIX=f"bench-serving-{os.getpid()}",
                INTERNAL_API_KEY="",
                JWT_SECRET="",
            )
            services.append(
                spawn_service(
                    "engine", [sys.executable, "-m", "orchestrator", "serve"], engine_port, env
                )
            )
            services.append(
                spawn_service(
                    "baseline",
                    [sys.executable, "-m", "bench.baseline_app", "--port", str(baseline_port)],
                    baseline_port,
                    env,
                )
            )
            for service in services:
                clients[service.name] = Http(service.url)
            await asyncio.gather(*(wait_serving(s, clients[s.name], symbols[0]) for s in services))
            log(f"engine on :{engine_port}, baseline on :{baseline_port}: both answer")
            writer = await BarWriter.connect(settings)
            roots += [service.proc.pid for service in services]
            results["agreement"] = await agreement(clients, symbols[:8])
            log(f"engine and baseline agree: {results['agreement']}")

            if "warm" in parts:
                results["warm"] = await warm_phase(services, clients, roots, symbols, args.seconds)
            if "cold" in parts:
                results["cold"] = await cold_phase(
                    services, clients, roots, writer, book, symbols, args.cold_trials
                )
            if "sweep" in parts:
                results["sweep"] = await sweep_phase(
                    services, clients, roots, writer, book, symbols, args.repeats
                )
            if "barrier" in parts:
                results["barrier"] = await barrier_phase(
                    services, clients, roots, symbols, args.seconds
                )

        if MODEL_PARTS & set(parts):
            with paused(services):
                await wait_idle(roots)
                log(f"features for {BACKTEST_ROWS} rows of one long series (backtest pipeline)")
                tensors = await feature_rows(grpc_port, BACKTEST_ROWS)
                out_dir = Path(tempfile.mkdtemp(prefix="bench-serving-pa-"))
                try:
                    data = out_dir / "inputs.json"
                    seq, tab, ctx = tensors.first(64)
                    write_perf_data(data, seq[:16], tab[:16], ctx[:16])
                    if "perf" in parts or "batching" in parts:
                        results["perf"] = await asyncio.to_thread(
                            perf_sweep,
                            "batching-on",
                            grpc_port,
                            http_port,
                            data,
                            args.perf_interval_ms,
                            out_dir,
                        )
                    if "perf" in parts:
                        results["ceiling"] = await asyncio.to_thread(
                            ceiling, seq, tab, ctx, max(3.0, args.seconds)
                        )
                    if "batching" in parts:
                        results["batching_off"] = await asyncio.to_thread(
                            batching_off, data, args.perf_interval_ms, out_dir
                        )
                        results["batching_one_instance"] = await asyncio.to_thread(
                            batching_one_instance, data, args.perf_interval_ms, out_dir
                        )
                    if "backtest" in parts:
                        await wait_idle(roots)
                        results["backtest"] = await backtest_phase(tensors)
                finally:
                    shutil.rmtree(out_dir, ignore_errors=True)
        return results
    finally:
        for client in clients.values():
            await client.aclose()
        if tensors is not None:
            await tensors.client.close()
        if writer is not None:
            await writer.close()
        for service in services:
            service.stop()
        with contextlib.suppress(Exception):
            await triton_start  # a start still in flight would leave a server behind
        await asyncio.to_thread(triton.stop)
        if HTTP_PARTS & set(parts):
            log("removing the benchmark symbols")
            await delete_symbols(db, symbol_names(N_MAX))
        await db.close()
