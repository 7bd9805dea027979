"""A cold start's seed reads at 1,000-10,000 symbols: each series' newest bars, read both ways.

`make bench-seed-reads` (after `make bench-scale`, with `--native-bars` for the 15m and 1h series
the engine seeds from stored bars). Per universe size N and served timeframe, in the benchmark's
own database, side by side and alternating in one window: the read a cold start makes now
(`BarStore.latest_bars_many`, one read per seeding batch of SEED_BATCH keys) and the one it made
before (`latest_bars` per series, READS_IN_FLIGHT at once, as the engine did). Each series reads
what the served model seeds from (`seed_bars` of its feature spec). For scale, the CPU of seeding
one batch in this process (`seed_states`, what the seeding workers do) is timed too. Client CPU
is this process's; MariaDB's is its server's.
Results: bench/results/seed_reads.json and seed_reads.png.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.scale.plots import loglog, save
from bench.scale.quality import universe
from bench.scale.run import pids_named
from bench.serving.services import cpu_seconds
from orchestrator.features.online import seed_bars
from orchestrator.features.seed_batch import seed_states
from orchestrator.features.spec import FeatureSpec
from orchestrator.inference.seeding import SEED_BATCH
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import DatabaseSettings

ROOT = Path(__file__).resolve().parents[2]
REPOSITORY = ROOT / "model_repository" / "cpu"
READS_IN_FLIGHT = 4  # the per-series reads the engine ran at once before the batched read
SERVED = {Timeframe.M5: "", Timeframe.M15: "_15m", Timeframe.H1: "_1h"}
REPEATS = 2


def served_spec(timeframe: Timeframe) -> FeatureSpec:
    """The newest exported feature spec of the timeframe's models."""
    model = REPOSITORY / f"signal_metamodel{SERVED[timeframe]}"
    newest = max((p for p in model.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    return FeatureSpec.load(newest / "feature_spec.json")


async def _timed(work: Callable[[], Awaitable[Any]], server: list[int]) -> tuple[float, ...]:
    db_before, cpu_before = cpu_seconds(server), time.process_time()
    started = time.perf_counter()
    await work()
    return (
        time.perf_counter() - started,
        time.process_time() - cpu_before,
        cpu_seconds(server) - db_before,
    )


def _summary(runs: list[tuple[float, ...]]) -> dict[str, float]:
    return {
        "wall_s": statistics.median(r[0] for r in runs),
        "wall_min_s": min(r[0] for r in runs),
        "wall_max_s": max(r[0] for r in runs),
        "client_cpu_s": statistics.median(r[1] for r in runs),
        "database_cpu_s": statistics.median(r[2] for r in runs),
    }


async def measure(store: BarStore, n: int, timeframe: Timeframe, server: list[int]) -> Any:
    symbols, _ = await universe(store, n)
    spec = served_spec(timeframe)
    limit = seed_bars(spec)
    sources = {symbol: await store.source_timeframe(symbol, timeframe) for symbol in symbols}
    batches = [symbols[i : i + SEED_BATCH] for i in range(0, n, SEED_BATCH)]

    async def batched() -> None:
        for batch in batches:
            await store.latest_bars_many(
                timeframe, {s: sources[s] for s in batch}, limit, closed_only=True
            )

    async def one_by_one() -> None:
        reads = asyncio.Semaphore(READS_IN_FLIGHT)

        async def read(symbol: str) -> None:
            async with reads:
                await store.latest_bars(
                    symbol, timeframe, limit, closed_only=True, source=sources[symbol]
                )

        for batch in batches:
            await asyncio.gather(*(read(symbol) for symbol in batch))

    runs: dict[str, list[tuple[float, ...]]] = {"batched": [], "one_by_one": []}
    for _ in range(REPEATS):  # alternating, in the same window
        runs["batched"].append(await _timed(batched, server))
        runs["one_by_one"].append(await _timed(one_by_one, server))
    frames = await store.latest_bars_many(
        timeframe, {s: sources[s] for s in batches[0]}, limit, closed_only=True
    )
    started = time.process_time()
    seed_states(list(frames.values()), spec)
    seed_cpu_s = (time.process_time() - started) / len(frames)
    result: dict[str, Any] = {
        "n": n,
        "timeframe": timeframe.value,
        "bars_per_series": limit,
        "stored_at": sorted({source.value for source in sources.values()}),
        "batched": _summary(runs["batched"]),
        "one_by_one": _summary(runs["one_by_one"]),
        "seed_cpu_s_per_series": seed_cpu_s,
    }
    b, o = result["batched"], result["one_by_one"]
    print(
        f"N={n:>6,} {timeframe.value:>3} ({limit} bars from {'/'.join(result['stored_at'])}): "
        f"batched {b['wall_s']:.2f} s (CPU {b['client_cpu_s']:.2f} + MariaDB "
        f"{b['database_cpu_s']:.2f}), one by one {o['wall_s']:.2f} s (CPU "
        f"{o['client_cpu_s']:.2f} + {o['database_cpu_s']:.2f}), {o['wall_s'] / b['wall_s']:.1f}x;"
        f" seeding {seed_cpu_s * 1e3:.2f} ms CPU a series",
        flush=True,
    )
    return result


def plot(results: list[dict[str, Any]], path: Path) -> None:
    lines = []
    for timeframe in SERVED:
        rows = [r for r in results if r["timeframe"] == timeframe.value]
        for key, style, how in (("batched", "o-", "batched"), ("one_by_one", "x--", "per series")):
            seconds = [r[key]["wall_s"] for r in rows]
            lines.append((f"{timeframe.value}: {how}", style, [r["n"] for r in rows], seconds))
    loglog(lines, "Reading every series' seed bars (a cold start)", "symbols", path)


async def main(sizes: list[int]) -> None:
    db = await Database.connect(DatabaseSettings.from_env())
    server = pids_named("mariadbd", "mysqld")
    try:
        store = BarStore(db)
        results = [await measure(store, n, tf, server) for n in sizes for tf in SERVED]
    finally:
        await db.close()
    save(results, "seed_reads", plot)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000])
    asyncio.run(main(parser.parse_args().sizes))
