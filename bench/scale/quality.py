"""Live quality at 1,000-10,000 symbols: a resolve pass after one new bar for every series.

`make bench-quality` (after `make bench-scale` has stored the benchmark's symbols). Per universe
size N, in the benchmark's own database: every symbol's predictions of 30 consecutive stored 5m
bars are recorded as the engine would record them, one bar after another, with a resolve pass
after each (so each pass reads one new bar per series); the last 12 passes are timed. Side by
side in the same run, on the same spans: reading those bars the way the tracker does
(`bars_between_many`: one query per 1,000 series, arrays) and the way it did before
(`bars_between`: a query and a DataFrame per series). Client CPU is this process's; MariaDB's and
Redis's are their server processes'.
Results: bench/results/quality_scale.json and quality_scale.png.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from redis.asyncio import Redis

from bench.scale.plots import loglog, save
from bench.scale.run import PREFIX, pids_named
from bench.serving.services import cpu_seconds
from orchestrator.inference.prediction import serve_together
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.quality.tracker import QualityTracker
from orchestrator.settings import DatabaseSettings, RedisSettings
from tests.quality.test_tracker import make_prediction

BARS = 30  # recorded per symbol; the first passes fill the rows
TIMED = 12  # the last passes, timed
CHUNK = 1_000
FIVE_MIN = timedelta(minutes=5)


async def _timed(
    work: Callable[[], Awaitable[Any]], server: list[int], redis_server: list[int] | None = None
) -> tuple[float, ...]:
    """Wall seconds, this process's CPU seconds, the database server's and Redis's, of one
    call."""
    redis_server = redis_server or []
    db_before, redis_before = cpu_seconds(server), cpu_seconds(redis_server)
    cpu_before, started = time.process_time(), time.perf_counter()
    await work()
    wall = time.perf_counter() - started
    return (
        wall,
        time.process_time() - cpu_before,
        cpu_seconds(server) - db_before,
        cpu_seconds(redis_server) - redis_before,
    )


async def universe(store: BarStore, n: int) -> tuple[list[str], datetime]:
    """The first n benchmark symbols, and the newest 5m bar they all have."""
    rows = await store.db.fetchall(
        "SELECT symbol, MAX(ts) FROM bars WHERE timeframe = '5m' AND symbol LIKE %s"
        " GROUP BY symbol ORDER BY symbol LIMIT %s",
        (f"{PREFIX}%", n),
    )
    if len(rows) < n:
        raise SystemExit(f"{len(rows)} benchmark symbols stored, {n} needed: run make bench-scale")
    newest = min(pd.Timestamp(ts, tz="UTC") for _, ts in rows).to_pydatetime()
    return [str(symbol) for symbol, _ in rows], newest


async def measure(
    store: BarStore, redis: Redis, n: int, server: list[int], redis_server: list[int]
) -> dict[str, Any]:
    symbols, newest = await universe(store, n)
    first = newest - (BARS - 1) * FIVE_MIN
    tracker = QualityTracker(redis, namespace=f"bench-quality-{uuid.uuid4().hex[:12]}")
    passes = []
    for k in range(BARS):
        bar = pd.Timestamp(first + k * FIVE_MIN)
        predictions = [make_prediction(bar, symbol) for symbol in symbols]
        serve_together(predictions)  # the head over the batch, as the engine serves them
        tracker.record(predictions)
        resolve = functools.partial(tracker.resolve, store, now=bar.to_pydatetime())
        took = await _timed(resolve, server, redis_server)
        if k >= BARS - TIMED:
            passes.append(took)
    spans = {symbol: (newest, newest + FIVE_MIN) for symbol in symbols}  # one new bar each
    chunks = [dict(list(spans.items())[i : i + CHUNK]) for i in range(0, n, CHUNK)]

    async def batched() -> None:
        for chunk in chunks:
            await store.bars_between_many(Timeframe.M5, chunk)

    async def one_by_one() -> None:
        for symbol, (start, end) in spans.items():
            await store.bars_between(symbol, Timeframe.M5, start, end)

    reads: dict[str, list[tuple[float, ...]]] = {"batched": [], "one_by_one": []}
    for _ in range(3):  # alternating, in the same window
        reads["batched"].append(await _timed(batched, server))
        reads["one_by_one"].append(await _timed(one_by_one, server))

    def summary(runs: list[tuple[float, ...]]) -> dict[str, float]:
        out = {
            "wall_s": statistics.median(r[0] for r in runs),
            "wall_min_s": min(r[0] for r in runs),
            "wall_max_s": max(r[0] for r in runs),
            "client_cpu_s": statistics.median(r[1] for r in runs),
            "database_cpu_s": statistics.median(r[2] for r in runs),
        }
        if len(runs[0]) > 3:
            out["redis_cpu_s"] = statistics.median(r[3] for r in runs)
        return out

    result: dict[str, Any] = {
        "n": n,
        "open_rows": sum(tracker.open_rows((s, Timeframe.M5)) for s in symbols),
        "outcomes_per_pass": tracker.shared.counted / BARS,
        "pass": summary(passes),
        "read_batched": summary(reads["batched"]),
        "read_one_by_one": summary(reads["one_by_one"]),
    }
    p, b, o = result["pass"], result["read_batched"], result["read_one_by_one"]
    print(
        f"N={n:>6,}: pass {p['wall_s']:.2f} s (client CPU {p['client_cpu_s']:.2f}, MariaDB "
        f"{p['database_cpu_s']:.2f}, Redis {p['redis_cpu_s']:.2f}); reading one new bar per "
        f"series: batched {b['wall_s']:.2f} s"
        f" (CPU {b['client_cpu_s']:.2f} + {b['database_cpu_s']:.2f}), one by one "
        f"{o['wall_s']:.2f} s (CPU {o['client_cpu_s']:.2f} + {o['database_cpu_s']:.2f}), "
        f"{o['wall_s'] / b['wall_s']:.1f}x",
        flush=True,
    )
    return result


def plot(results: list[dict[str, Any]], path: Path) -> None:
    n = [r["n"] for r in results]
    lines = [
        (label, "o-", n, [r[key]["wall_s"] for r in results])
        for key, label in (
            ("pass", "resolve pass (batched reads, fold, count)"),
            ("read_batched", "reading: one query per 1,000 series"),
            ("read_one_by_one", "reading: one query per series (before)"),
        )
    ]
    loglog(lines, "Live quality after one new bar per series", "symbols (5m series)", path)


async def main(sizes: list[int]) -> None:
    db = await Database.connect(DatabaseSettings.from_env())
    redis = Redis.from_url(RedisSettings.from_env().url)
    server, redis_server = pids_named("mariadbd", "mysqld"), pids_named("redis-server")
    try:
        results = [await measure(BarStore(db), redis, n, server, redis_server) for n in sizes]
    finally:
        await db.close()
        await redis.aclose()
    save(results, "quality_scale", plot)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 3000, 10000])
    asyncio.run(main(parser.parse_args().sizes))
