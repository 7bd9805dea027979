"""The HTTP phases, engine against baseline: the agreement check (both answer the same
question), warm closed loops at concurrency 1/16/64, cold (one new bar, GET until fresh) and the
bar-close sweep (N new bars in one transaction, every symbol until all are fresh). While one
service is measured the other is paused and each timed step starts from idle.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections import deque
from datetime import datetime

import numpy as np

from bench.serving.client import (
    Http,
    TransportError,
    bar_time_of,
    closed_loop,
    parse_bar_time,
    request_all,
    wrk_loop,
)
from bench.serving.common import CONCURRENCY, SWEEP_CONCURRENCY, SWEEP_SIZES, Json, log
from bench.serving.market import BarBook, BarWriter
from bench.serving.services import Service, paused, wait_idle


async def agreement(clients: dict[str, Http], symbols: list[str]) -> Json:
    """Both services must answer the same question: same bar and direction. The confidence is
    reported, not required to match: the baseline returns the fused ensemble's raw metamodel
    output, the engine the serving head's (calibrated, or the base rate where the gate serves
    it)."""
    diffs, same_bar, same_direction = [], 0, 0
    for symbol in symbols:
        engine = (await clients["engine"].get(f"/api/predict/{symbol}")).json()
        baseline = (await clients["baseline"].get(f"/api/predict/{symbol}")).json()
        same_bar += parse_bar_time(engine["bar_time"]) == parse_bar_time(baseline["bar_time"])
        same_direction += engine["direction"] == baseline["direction"]
        diffs.append(abs(float(engine["confidence"]) - float(baseline["confidence"])))
    return {
        "symbols": len(symbols),
        "same_bar_time": same_bar,
        "same_direction": same_direction,
        "max_abs_confidence_diff": max(diffs),
    }


# --- warm -----------------------------------------------------------------------------------
async def closed_loop_point(
    client: Http,
    symbols: list[str],
    c: int,
    seconds: float,
    path: str = "/api/predict/",
    query: str = "",
) -> Json:
    """One closed loop on `path` + symbol + `query`: c=1 asks for the first symbol, higher c
    cycles over every symbol (worker k, request i asks for symbol (k + i*c) mod n). wrk when
    installed (a Python client costs as much CPU per request as the engine), else aiohttp."""
    chosen = symbols[:1] if c == 1 else symbols
    if shutil.which("wrk"):
        return await asyncio.to_thread(
            wrk_loop, str(client.base_url), chosen, c, seconds, path, query
        )

    async def call(k: int, i: int) -> bool:
        symbol = chosen[(k + i * c) % len(chosen)]
        try:
            response = await client.get(f"{path}{symbol}{query}")
        except TransportError:
            return False
        return response.status_code == 200

    return await closed_loop(call, c, seconds)


def log_point(label: str, c: int, summary: Json) -> None:
    log(
        f"{label} c={c:2d}  {summary['throughput_per_s']:8.1f} req/s  "
        f"p50 {summary.get('p50_ms', float('nan')):8.2f} ms  "
        f"p99 {summary.get('p99_ms', float('nan')):8.2f} ms  "
        f"errors {summary['errors']}"
        + (f"  mean batch {summary['mean_batch']:.2f}" if summary.get("mean_batch") else "")
    )


async def warm_phase(
    services: list[Service],
    clients: dict[str, Http],
    roots: list[int],
    symbols: list[str],
    seconds: float,
) -> Json:
    """Closed loops on /api/predict at every concurrency (closed_loop_point) after one warm-up
    pass, so the engine's per-symbol caches are full."""
    results: Json = {}
    for service in services:
        client = clients[service.name]
        with paused([s for s in services if s is not service]):
            await wait_idle(roots)
            failed = await request_all(client, symbols, 16)
            log(f"warm {service.name}: warm-up pass over {len(symbols)} symbols ({failed} failed)")
            results[service.name] = {"warmup_failed": failed}
            for c in CONCURRENCY:
                await wait_idle(roots)
                summary = await closed_loop_point(client, symbols, c, seconds)
                results[service.name][str(c)] = summary
                log_point(f"warm {service.name:8s}", c, summary)
    return results


# --- custom barriers --------------------------------------------------------------------------
SIGNAL_PATH = "/api/signals/"
CUSTOM_BARRIER = "?tp=2&sl=1&horizon=swing&side=long"


async def barrier_phase(
    services: list[Service],
    clients: dict[str, Http],
    roots: list[int],
    symbols: list[str],
    seconds: float,
) -> Json:
    """The engine alone (the baseline has no barriers): warm GET /api/signals/{symbol} with the
    models' own levels (encoded once per bar) against the same request with the caller's
    levels (the path model's closed form per request, no Triton call; the requests of one
    event-loop turn share one evaluation), at concurrency 1 and 16, with the mean batch."""
    engine = next(s for s in services if s.name == "engine")
    client = clients["engine"]
    results: Json = {}
    with paused([s for s in services if s is not engine]):
        for name, query in (("default", ""), ("custom", CUSTOM_BARRIER)):
            await wait_idle(roots)
            for symbol in symbols:  # every body encoded / every prediction cached first
                await client.get(f"{SIGNAL_PATH}{symbol}{query}")
            results[name] = {}
            for c in (1, 16):
                await wait_idle(roots)
                before = await barrier_batches(client)
                summary = await closed_loop_point(client, symbols, c, seconds, SIGNAL_PATH, query)
                after = await barrier_batches(client)
                if name == "custom":  # questions per closed-form evaluation (batched per turn)
                    batches = after["batches"] - before["batches"]
                    questions = after["questions"] - before["questions"]
                    summary["mean_batch"] = questions / batches if batches else None
                results[name][str(c)] = summary
                log_point(f"signals {name:8s}", c, summary)
    return results


async def barrier_batches(client: Http) -> Json:
    """The engine's custom-barrier counters (questions asked, batches evaluated)."""
    counters: Json = (await client.get("/api/stats")).json()["barrier_batches"]
    return counters


# --- cold -----------------------------------------------------------------------------------
async def until_fresh(
    client: Http, symbol: str, expected: datetime, sent: float, timeout_s: float
) -> tuple[float, int, int]:
    """GET back to back until the answer is for `expected`: (ms since COMMIT, stale, errors)."""
    stale = errors = 0
    while time.perf_counter() - sent < timeout_s:
        try:
            got = await bar_time_of(client, symbol)
        except (RuntimeError, *TransportError):
            errors += 1
            continue
        if got == expected:
            return (time.perf_counter() - sent) * 1e3, stale, errors
        stale += 1
    raise TimeoutError(f"{symbol}: no answer for the bar at {expected} within {timeout_s:g} s")


async def cold_phase(
    services: list[Service],
    clients: dict[str, Http],
    roots: list[int],
    writer: BarWriter,
    book: BarBook,
    symbols: list[str],
    trials: int,
) -> Json:
    """Per trial each service gets its own symbol (so no work is shared) and its own new bar;
    the order alternates. Symbols were asked for before, like any symbol with live clients."""
    own = {
        s.name: [symbols[(len(services) * k + j) % len(symbols)] for k in range(trials)]
        for j, s in enumerate(services)
    }
    for service in services:
        await request_all(clients[service.name], sorted(set(own[service.name])), 4)
    runs: dict[str, list[Json]] = {s.name: [] for s in services}
    for k in range(trials):
        order = services if k % 2 == 0 else services[::-1]
        for service in order:
            symbol = own[service.name][k]
            with paused([s for s in services if s is not service]):
                await wait_idle(roots)
                rows, times = book.advance([symbol])
                sent, commit_ms = await writer.write(rows)
                ms, stale, errors = await until_fresh(
                    clients[service.name], symbol, times[symbol], sent, 60.0
                )
            runs[service.name].append(
                {
                    "symbol": symbol,
                    "ms": ms,
                    "stale": stale,
                    "errors": errors,
                    "commit_ms": commit_ms,
                }
            )
        log(
            f"cold trial {k + 1:2d}/{trials}: "
            + "  ".join(f"{name} {r[-1]['ms']:7.1f} ms" for name, r in runs.items())
        )
    results: Json = {}
    for name, trial in runs.items():
        took = np.asarray([t["ms"] for t in trial])
        results[name] = {
            "median_ms": float(np.median(took)),
            "p90_ms": float(np.percentile(took, 90)),
            "min_ms": float(took.min()),
            "max_ms": float(took.max()),
            "stale_answers": int(sum(t["stale"] for t in trial)),
            "trials": trial,
        }
    return results


# --- bar-close sweep ------------------------------------------------------------------------
async def sweep_once(client: Http, writer: BarWriter, book: BarBook, symbols: list[str]) -> Json:
    """New bars for all `symbols` in one transaction, then SWEEP_CONCURRENCY tasks ask for
    every symbol; a stale answer goes back to the end of the queue and is counted."""
    rows, times = book.advance(symbols)
    sent, commit_ms = await writer.write(rows)
    queue = deque(symbols)
    retries = errors = 0
    fresh_ms: list[float] = []

    async def worker() -> None:
        nonlocal retries, errors
        while queue:
            symbol = queue.popleft()
            try:
                got = await bar_time_of(client, symbol)
            except (RuntimeError, *TransportError):
                errors += 1
                if errors > 50 + len(symbols):
                    raise
                queue.append(symbol)
                continue
            if got == times[symbol]:
                fresh_ms.append((time.perf_counter() - sent) * 1e3)
            else:
                retries += 1
                queue.append(symbol)

    await asyncio.wait_for(
        asyncio.gather(*(worker() for _ in range(SWEEP_CONCURRENCY))), timeout=900
    )
    return {
        "seconds": max(fresh_ms) / 1e3,
        "first_fresh_ms": min(fresh_ms),
        "median_fresh_ms": float(np.median(fresh_ms)),
        "retries": retries,
        "errors": errors,
        "commit_ms": commit_ms,
    }


async def sweep_phase(
    services: list[Service],
    clients: dict[str, Http],
    roots: list[int],
    writer: BarWriter,
    book: BarBook,
    symbols: list[str],
    repeats: int,
) -> Json:
    sizes = sorted({min(n, len(symbols)) for n in SWEEP_SIZES})
    results: Json = {}
    for n in sizes:
        runs: dict[str, list[Json]] = {s.name: [] for s in services}
        for r in range(repeats):
            for service in services if r % 2 == 0 else services[::-1]:
                with paused([s for s in services if s is not service]):
                    await wait_idle(roots)
                    run = await sweep_once(clients[service.name], writer, book, symbols[:n])
                runs[service.name].append(run)
                log(
                    f"sweep N={n:4d} {service.name:8s} repeat {r + 1}/{repeats}: "
                    f"{run['seconds']:7.2f} s to the last fresh answer "
                    f"(retries {run['retries']}, errors {run['errors']})"
                )
        results[str(n)] = {}
        for name, trial in runs.items():
            s = np.asarray([t["seconds"] for t in trial])
            results[str(n)][name] = {
                "median_s": float(np.median(s)),
                "min_s": float(s.min()),
                "max_s": float(s.max()),
                "spread_s": float(s.max() - s.min()),
                "retries": int(sum(t["retries"] for t in trial)),
                "runs": trial,
            }
    return results
