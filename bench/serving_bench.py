"""The serving engine against a naive seed-style baseline (bench/baseline_app.py), side by side.

One run starts its own tritonserver (cpu profile), the engine (`python -m orchestrator serve`) and
the baseline on free ports, seeds benchmark symbols BSV0000.. with generated 5m bars, and measures:

- warm:     closed-loop GET /api/predict/{symbol} at concurrency 1/16/64 (req/s, p50, p99);
- cold:     one new bar committed with SQL, then GET until the answer is for that bar;
- sweep:    a new bar for N symbols in one transaction, then every symbol until all are fresh;
- perf:     perf_analyzer on signal_ensemble (gRPC) against FusedEnsemble in-process (ceiling);
- batching: the same perf_analyzer sweep on a second Triton without dynamic batching;
- backtest: the backtest's batched Triton path against FusedEnsemble in-process, rows/s.

The engine is measured only through HTTP and SQL, so its internals may change under the harness.
While one service is measured the other one is paused (SIGSTOP), and every timed step waits until
our processes are idle, so background work of one never bills the other.

Usage: make bench-serving   (or .venv/bin/python -m bench.serving_bench [--symbols N]
       [--seconds S] [--repeats R] [--only warm,cold,sweep,perf,batching,backtest])
Writes bench/results/serving.json, serving_throughput_latency.png and serving_sweep.png.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import asyncmy
import matplotlib
import numpy as np
import numpy.typing as npt
import pandas as pd
import tritonclient.http as triton_http

from export.backends.fused_ensemble import FusedEnsemble
from orchestrator.demo.generator import generate_bars
from orchestrator.devstack import process
from orchestrator.devstack.process import free_ports
from orchestrator.devstack.triton import TritonServer
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import SymbolInfo
from orchestrator.settings import PROJECT_ROOT, RUN_DIR, DatabaseSettings

matplotlib.use("Agg")
import matplotlib.pyplot as plt

N_MAX = 1000
PREFIX = "BSV"
EXTRA_BARS = 40  # history beyond required_bars(), so both services can score every symbol
CONCURRENCY = (1, 16, 64)
PA_CONCURRENCY = (1, 2, 4, 8, 16, 32, 64)
SWEEP_SIZES = (100, 1000)
SWEEP_CONCURRENCY = 16
PARTS = ("warm", "cold", "sweep", "perf", "batching", "backtest")
HTTP_PARTS = {"warm", "cold", "sweep"}
MODEL_PARTS = {"perf", "batching", "backtest"}
ENSEMBLE = "signal_ensemble"
REPOSITORY = PROJECT_ROOT / "model_repository" / "cpu"
VERSION_DIR = REPOSITORY / ENSEMBLE / "1"
RESULTS = Path(__file__).parent / "results"
PERF_ANALYZER = PROJECT_ROOT / ".venv" / "bin" / "perf_analyzer"
BACKTEST_ROWS = 20_000
STEP = pd.Timedelta(minutes=5)
INSERT_BAR = (
    "INSERT INTO bars (symbol, timeframe, ts, open, high, low, close, volume)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)
F32 = npt.NDArray[np.float32]
Json = dict[str, Any]

_STARTED = time.monotonic()


def log(message: str) -> None:
    """Progress lines with elapsed time: a full run takes many minutes."""
    print(f"[{time.monotonic() - _STARTED:7.1f}s] {message}", flush=True)


def symbol_names(count: int) -> list[str]:
    return [f"{PREFIX}{i:04d}" for i in range(count)]


def percentile_summary(latencies_s: list[float], wall_s: float, errors: int = 0) -> Json:
    ms = np.asarray(latencies_s, dtype=np.float64) * 1e3
    if ms.size == 0:
        return {"requests": 0, "errors": errors, "throughput_per_s": 0.0}
    return {
        "requests": int(ms.size),
        "errors": errors,
        "throughput_per_s": ms.size / wall_s,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "mean_ms": float(ms.mean()),
    }


# --- processes ------------------------------------------------------------------------------
def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, CPU seconds used) for every process we may read."""
    tick = os.sysconf("SC_CLK_TCK")
    table = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        table[int(stat.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    return table


def _cpu_seconds(roots: list[int]) -> float:
    """CPU time of `roots` and all their descendants (Triton's Python stubs are children)."""
    table = _proc_table()
    members = set(roots) & table.keys()
    grew = True
    while grew:
        more = {pid for pid, (parent, _) in table.items() if parent in members} - members
        members |= more
        grew = bool(more)
    return sum(table[pid][1] for pid in members)


_IDLE_FLOOR = [float("inf")]  # lowest CPU use of our servers ever seen (cores), over the run


async def wait_idle(roots: list[int], *, below: float = 0.15, timeout_s: float = 60.0) -> float:
    """Waits until our servers are quiet over two 0.3 s windows, so the previous step's
    background work (e.g. bar-close precomputation) does not bill the next. Quiet means below
    `below` cores, or near the lowest use ever seen when a server polls steadily even idle."""
    deadline = time.monotonic() + timeout_s
    calm, window = 0, 0.3
    started = time.monotonic()
    before = _cpu_seconds(roots)
    while time.monotonic() < deadline:
        await asyncio.sleep(window)
        after = _cpu_seconds(roots)
        rate, before = (after - before) / window, after
        _IDLE_FLOOR[0] = min(_IDLE_FLOOR[0], rate)
        calm = calm + 1 if rate < max(below, 1.5 * _IDLE_FLOOR[0] + 0.05) else 0
        if calm >= 2:
            return time.monotonic() - started
    log(f"  (our processes still busy after {timeout_s:.0f} s; measuring anyway)")
    return time.monotonic() - started


@dataclass
class Service:
    """A server process of ours, in its own process group so it can be paused as a whole."""

    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    paused: bool = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def pause(self) -> None:
        if not self.paused and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        if self.paused:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGCONT)
            self.paused = False

    def stop(self) -> None:
        self.resume()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def spawn_service(name: str, command: list[str], port: int, env: dict[str, str]) -> Service:
    log_path = RUN_DIR / f"bench-serving-{name}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=PROJECT_ROOT,
        )
    return Service(name, port, proc, log_path)


@contextlib.contextmanager
def paused(services: list[Service]) -> Iterator[None]:
    """Everyone in `services` stopped for the block (resumed even when the block fails)."""
    for service in services:
        service.pause()
    try:
        yield
    finally:
        for service in services:
            service.resume()


async def wait_serving(service: Service, client: Http, symbol: str) -> None:
    """Up when /health and a first prediction answer 200 (the engine may load lazily)."""
    deadline = time.monotonic() + 240
    last = ""
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            break
        try:
            if (await client.get("/health")).status_code == 200:
                response = await client.get(f"/api/predict/{symbol}")
                if response.status_code == 200:
                    return
                last = f"{response.status_code}: {response.text[:200]}"
        except TransportError as exc:
            last = repr(exc)
        await asyncio.sleep(0.5)
    raise RuntimeError(
        f"{service.name} did not serve {symbol} ({last}); last lines of {service.log_path}:\n"
        + process.log_tail(service.log_path)
    )


# --- HTTP client ----------------------------------------------------------------------------
@dataclass
class Reply:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode(errors="replace")

    def json(self) -> Any:
        return json.loads(self.content)


class Http:
    """A keep-alive HTTP client for one service. aiohttp, not httpx: on this 2-core machine
    httpx spent ~1.3 ms of CPU per request (1,000 warm answers in 1.3 s vs 0.47 s), so the
    client, not the server, set the pace of the sweep and cold measurements."""

    def __init__(self, base_url: str, connections: int = 128) -> None:
        self.base_url = base_url
        self._session = aiohttp.ClientSession(
            base_url,
            connector=aiohttp.TCPConnector(limit=connections),
            timeout=aiohttp.ClientTimeout(total=120),
        )

    async def get(self, path: str) -> Reply:
        async with self._session.get(path) as response:
            return Reply(response.status, await response.read())

    async def aclose(self) -> None:
        await self._session.close()


TransportError = (aiohttp.ClientError, TimeoutError)


# --- bars -----------------------------------------------------------------------------------
@dataclass
class BarBook:
    """The newest bar of every benchmark symbol, so the next bar continues each series."""

    last: dict[str, tuple[pd.Timestamp, float]]
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(2025))

    def advance(self, symbols: list[str]) -> tuple[list[tuple[Any, ...]], dict[str, datetime]]:
        """Rows for one new 5m bar per symbol, and each symbol's new bar time."""
        rows, times = [], {}
        for symbol in symbols:
            ts, close = self.last[symbol]
            ts = ts + STEP
            new = round(close * (1 + self.rng.normal(0, 0.001)), 2)
            high = round(max(close, new) * 1.0004, 2)
            low = round(min(close, new) * 0.9996, 2)
            rows.append(
                (symbol, "5m", ts.strftime("%Y-%m-%d %H:%M:%S"), close, high, low, new, 3.0)
            )
            self.last[symbol] = (ts, new)
            times[symbol] = ts.to_pydatetime()
        return rows, times


async def delete_symbols(db: Database, symbols: list[str]) -> None:
    """Every row of the benchmark symbols, in every table with a `symbol` column (the engine
    may add tables, e.g. bar revisions), `symbols` last because the others refer to it."""
    rows = await db.fetchall(
        "SELECT c.TABLE_NAME FROM information_schema.COLUMNS c"
        " JOIN information_schema.TABLES t"
        " ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME"
        " WHERE c.TABLE_SCHEMA = DATABASE() AND c.COLUMN_NAME = 'symbol'"
        " AND t.TABLE_TYPE = 'BASE TABLE'",
        (),
    )
    tables = sorted({str(r[0]) for r in rows}, key=lambda name: (name == "symbols", name))
    for start in range(0, len(symbols), 100):
        chunk = symbols[start : start + 100]
        marks = ",".join(["%s"] * len(chunk))
        async with db.transaction() as conn, conn.cursor() as cur:
            for table in tables:
                await cur.execute(f"DELETE FROM `{table}` WHERE symbol IN ({marks})", chunk)


async def seed(db: Database, symbols: list[str], bars_per_symbol: int) -> BarBook:
    """Each symbol gets its own generated series (seeded by its index), written by the ingest
    writer like any other bars."""
    frames, last = [], {}
    for i, symbol in enumerate(symbols):
        bars = generate_bars("BTCUSD", bars=bars_per_symbol, seed=1000 + i)
        frames.append(bars.reset_index().assign(symbol=symbol, timeframe="5m"))
        last[symbol] = (bars.index[-1], float(bars["close"].iloc[-1]))
    info = {s: SymbolInfo(s, "crypto", 0.01, description="serving benchmark") for s in symbols}
    await write_bars(db, pd.concat(frames, ignore_index=True), info, show_progress=False)
    return BarBook(last)


class BarWriter:
    """One plain asyncmy connection: INSERT the new bars, then COMMIT, timed from the COMMIT."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    @classmethod
    async def connect(cls, settings: DatabaseSettings) -> BarWriter:
        conn = await asyncmy.connect(
            host=settings.host,
            port=settings.port,
            user=settings.user,
            password=settings.password,
            database=settings.database,
            autocommit=False,
            init_command="SET time_zone = '+00:00'",
        )
        return cls(conn)

    async def write(self, rows: list[tuple[Any, ...]]) -> tuple[float, float]:
        """(perf_counter when COMMIT was sent, COMMIT round trip in ms)."""
        async with self.conn.cursor() as cur:
            await cur.executemany(INSERT_BAR, rows)
        sent = time.perf_counter()
        await self.conn.commit()
        return sent, (time.perf_counter() - sent) * 1e3

    async def close(self) -> None:
        await self.conn.ensure_closed()


def parse_bar_time(raw: str) -> datetime:
    moment = datetime.fromisoformat(raw)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def bar_time_of(client: Http, symbol: str) -> datetime:
    response = await client.get(f"/api/predict/{symbol}")
    if response.status_code != 200:
        raise RuntimeError(f"{symbol}: {response.status_code} {response.text[:200]}")
    return parse_bar_time(response.json()["bar_time"])


async def agreement(clients: dict[str, Http], symbols: list[str]) -> Json:
    """Both services must answer the same question: same bar, direction and close confidence
    (the engine may compute features incrementally, so tiny float differences are allowed)."""
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
async def closed_loop(
    call: Callable[[int, int], Awaitable[bool]], concurrency: int, seconds: float
) -> Json:
    """`concurrency` workers back to back for `seconds`; call(worker, i) says if it succeeded."""
    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(k: int) -> None:
        nonlocal errors
        i = 0
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            ok = await call(k, i)
            if ok:
                latencies.append(time.perf_counter() - t0)
            else:
                errors += 1
            i += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker(k) for k in range(concurrency)))
    return percentile_summary(latencies, time.perf_counter() - started, errors)


WRK_SCRIPT = """
local symbols = {%s}
local n = #symbols
local i = 0
request = function()
  i = i + 1
  return wrk.format("GET", "/api/predict/" .. symbols[(i %% n) + 1])
end
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\\n{"requests": %%d, "duration_us": %%d, "errors": %%d, "non2xx": %%d,'
    .. ' "p50_us": %%d, "p99_us": %%d, "mean_us": %%f}\\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50), latency:percentile(99), latency.mean))
end
"""


def wrk_loop(base_url: str, symbols: list[str], concurrency: int, seconds: float) -> Json:
    """The same closed loop driven by wrk (C, one thread): the Python client costs about as much
    CPU per request as the engine itself, so on 2 cores it would cap what is measured."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % ", ".join(f'"{s}"' for s in symbols))
    try:
        output = subprocess.run(
            [
                "wrk",
                "-t1",
                f"-c{concurrency}",
                f"-d{max(1, round(seconds))}s",
                "--timeout",
                "30s",
                "-s",
                script.name,
                base_url,
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    stats = json.loads(output.strip().splitlines()[-1])
    good = stats["requests"] - stats["non2xx"]
    return {
        "requests": good,
        "errors": stats["errors"] + stats["non2xx"],
        "throughput_per_s": good / (stats["duration_us"] / 1e6),
        "p50_ms": stats["p50_us"] / 1e3,
        "p99_ms": stats["p99_us"] / 1e3,
        "mean_ms": stats["mean_us"] / 1e3,
        "client": "wrk",
    }


async def request_all(client: Http, symbols: list[str], concurrency: int) -> int:
    """Every symbol once (the warm-up pass); returns how many failed."""
    queue = deque(symbols)
    failed = 0

    async def worker() -> None:
        nonlocal failed
        while queue:
            symbol = queue.popleft()
            try:
                response = await client.get(f"/api/predict/{symbol}")
                failed += response.status_code != 200
            except TransportError:
                failed += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return failed


async def warm_phase(
    services: list[Service],
    clients: dict[str, Http],
    roots: list[int],
    symbols: list[str],
    seconds: float,
) -> Json:
    """c=1 asks for one symbol; c=16/64 spread over every symbol (worker k, request i asks for
    symbol (k + i*c) mod n) after one warm-up pass, so the engine's per-symbol caches are full."""
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

                async def call(k: int, i: int, c: int = c, client: Http = client) -> bool:
                    symbol = symbols[0] if c == 1 else symbols[(k + i * c) % len(symbols)]
                    try:
                        response = await client.get(f"/api/predict/{symbol}")
                    except TransportError:
                        return False
                    return response.status_code == 200

                if shutil.which("wrk"):
                    chosen = symbols[:1] if c == 1 else symbols
                    url = str(client.base_url)
                    summary = await asyncio.to_thread(wrk_loop, url, chosen, c, seconds)
                else:
                    summary = await closed_loop(call, c, seconds)
                results[service.name][str(c)] = summary
                log(
                    f"warm {service.name:8s} c={c:2d}  {summary['throughput_per_s']:8.1f} req/s  "
                    f"p50 {summary.get('p50_ms', float('nan')):8.2f} ms  "
                    f"p99 {summary.get('p99_ms', float('nan')):8.2f} ms  "
                    f"errors {summary['errors']}"
                )
    return results


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


# --- Triton / in-process ----------------------------------------------------------------------
def _triton_counts(http_url: str, model: str) -> tuple[int, int]:
    client = triton_http.InferenceServerClient(http_url)
    try:
        stats = client.get_inference_statistics(model)["model_stats"]
    finally:
        client.close()
    inference = sum(int(s.get("inference_count", 0)) for s in stats)
    execution = sum(int(s.get("execution_count", 0)) for s in stats)
    return inference, execution


def write_perf_data(path: Path, seq: F32, tab: F32, ctx: F32) -> None:
    """perf_analyzer input: real feature rows (batch-1 each), the same the ceiling runs on."""
    data = [
        {"SEQ": seq[i].ravel().tolist(), "TAB": tab[i].tolist(), "CTX": ctx[i].tolist()}
        for i in range(len(seq))
    ]
    path.write_text(json.dumps({"data": data}))


def perf_sweep(
    label: str,
    grpc_port: int,
    http_port: int,
    data: Path,
    interval_ms: int,
    out_dir: Path,
    concurrencies: tuple[int, ...] = PA_CONCURRENCY,
) -> list[Json]:
    """One perf_analyzer run per concurrency (powers of two), with Triton's own counters around
    each: inference_count / execution_count is the batch size dynamic batching really formed."""
    rows = []
    http_url = f"127.0.0.1:{http_port}"
    for c in concurrencies:
        csv_path = out_dir / f"{label}-c{c}.csv"
        before = _triton_counts(http_url, ENSEMBLE)
        command = [
            str(PERF_ANALYZER),
            "-m",
            ENSEMBLE,
            "-i",
            "grpc",
            "-u",
            f"127.0.0.1:{grpc_port}",
            "--concurrency-range",
            f"{c}:{c}",
            "--measurement-interval",
            str(interval_ms),
            "--stability-percentage",
            "50",
            "--max-trials",
            "6",
            "--input-data",
            str(data),
            "-f",
            str(csv_path),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
        if done.returncode != 0 and "stable" in done.stdout + done.stderr:
            # A busy machine may not settle within 6 windows: once more with longer windows.
            command[command.index("--measurement-interval") + 1] = str(2 * interval_ms)
            command[command.index("--max-trials") + 1] = "10"
            done = subprocess.run(command, capture_output=True, text=True, check=False, timeout=600)
        after = _triton_counts(http_url, ENSEMBLE)
        inferences, executions = after[0] - before[0], after[1] - before[1]
        row: Json = {
            "concurrency": c,
            "avg_batch_size": inferences / executions if executions else None,
            "exit_code": done.returncode,
        }
        if done.returncode == 0 and csv_path.exists():
            with csv_path.open() as handle:
                record = next(csv.DictReader(handle))
            row |= {
                "infer_per_s": float(record["Inferences/Second"]),
                "p50_ms": int(record["p50 latency"]) / 1e3,
                "p99_ms": int(record["p99 latency"]) / 1e3,
            }
        else:
            row["error"] = (done.stderr or done.stdout)[-400:]
        rows.append(row)
        batch = row["avg_batch_size"]
        log(
            f"perf_analyzer {label:11s} c={c:2d}  {row.get('infer_per_s', 0.0):8.1f} infer/s  "
            f"p50 {row.get('p50_ms', float('nan')):7.2f} ms  p99 "
            f"{row.get('p99_ms', float('nan')):7.2f} ms  avg batch "
            + ("-" if batch is None else f"{batch:.2f}")
            + (f"  ERROR {row['error'][-160:]}" if "error" in row else "")
        )
    return rows


def ceiling(seq: F32, tab: F32, ctx: F32, seconds: float) -> Json:
    """FusedEnsemble.run in this process, no server: best of three windows per setting."""
    results: Json = {}
    for threads in (1, 2):
        ensemble = FusedEnsemble(str(VERSION_DIR), threads, threads)
        for batch in (1, 64):
            s, t, c = seq[:batch], tab[:batch], ctx[:batch]
            for _ in range(5):
                ensemble.run(s, t, c)
            best = 0.0
            for _ in range(3):
                calls, started = 0, time.perf_counter()
                while (elapsed := time.perf_counter() - started) < seconds / 3:
                    ensemble.run(s, t, c)
                    calls += 1
                best = max(best, calls * batch / elapsed)
            results[f"batch{batch}_threads{threads}"] = best
            log(f"ceiling batch {batch:2d} threads {threads}: {best:9.1f} inferences/s")
    for batch in (1, 64):
        results[f"batch{batch}_best"] = max(results[f"batch{batch}_threads{t}"] for t in (1, 2))
    return results


def repository_without_batching(target: Path) -> None:
    """A repository like the cpu one whose signal_ensemble has no dynamic_batching line."""
    for entry in REPOSITORY.iterdir():
        if entry.name == ENSEMBLE:
            shutil.copytree(entry, target / entry.name)
        else:
            (target / entry.name).symlink_to(entry)
    config = target / ENSEMBLE / "config.pbtxt"
    lines = config.read_text().splitlines(keepends=True)
    kept = [line for line in lines if not line.lstrip().startswith("dynamic_batching")]
    if len(kept) == len(lines):
        raise RuntimeError(f"no dynamic_batching line in {REPOSITORY / ENSEMBLE / 'config.pbtxt'}")
    config.write_text("".join(kept))


def batching_off(data: Path, interval_ms: int, out_dir: Path) -> list[Json]:
    with tempfile.TemporaryDirectory(prefix="bench-serving-repo-") as tmp:
        repository_without_batching(Path(tmp))
        http_port, grpc_port, metrics_port = free_ports(3)
        server = TritonServer(
            Path(tmp),
            http_port,
            grpc_port,
            metrics_port,
            name="triton-bench-serving-nobatch",
            load_models=[ENSEMBLE],
        )
        log("starting a second tritonserver without dynamic batching")
        server.start()
        try:
            return perf_sweep("batching-off", grpc_port, http_port, data, interval_ms, out_dir)
        finally:
            server.stop()


@dataclass
class Tensors:
    """Real feature rows of one long generated series, built by the backtest's FeatureBlock."""

    block: Any
    models: Any
    client: Any

    def first(self, n: int) -> tuple[F32, F32, F32]:
        inputs = self.block.inputs(0, n)
        return inputs.seq, inputs.tab, inputs.ctx


async def feature_rows(grpc_port: int, rows: int) -> Tensors:
    """Imported here: the backtest path is the part of the engine most likely to move."""
    import tritonclient.grpc.aio as grpc_aio

    from orchestrator.backtest.predictions import FeatureBlock, warmup_bars
    from orchestrator.inference.client import SignalModels

    client = grpc_aio.InferenceServerClient(f"127.0.0.1:{grpc_port}")
    models = SignalModels(client, 120.0)
    spec = await models.spec()
    first = warmup_bars(spec)
    bars = generate_bars("BTCUSD", bars=rows + first, seed=77)
    block = await asyncio.to_thread(FeatureBlock, bars, spec, first)
    return Tensors(block, models, client)


def _in_process_rows(tensors: Tensors, threads: int, batch: int) -> tuple[float, F32]:
    ensemble = FusedEnsemble(str(VERSION_DIR), threads, threads)
    n = len(tensors.block)
    confidence = np.empty(n, np.float32)
    ensemble.run(*tensors.first(batch))
    started = time.perf_counter()
    for start in range(0, n, batch):
        stop = min(start + batch, n)
        inputs = tensors.block.inputs(start, stop)
        confidence[start:stop] = ensemble.run(inputs.seq, inputs.tab, inputs.ctx)["CONFIDENCE"][
            :, 0
        ]
    return n / (time.perf_counter() - started), confidence


async def backtest_phase(tensors: Tensors) -> Json:
    """The backtest's batched Triton path (`_infer_all`: batches of 256, several in flight)
    against FusedEnsemble.run on the same tensors in batches of 256, same sequence-window cost."""
    from orchestrator.backtest.predictions import DEFAULT_IN_FLIGHT, MAX_BATCH, _infer_all

    n = len(tensors.block)
    await tensors.models.infer([tensors.block.inputs(0, MAX_BATCH)])  # warm the connection
    started = time.perf_counter()
    outputs, versions = await _infer_all(
        tensors.models,
        tensors.block,
        batch_size=MAX_BATCH,
        in_flight=DEFAULT_IN_FLIGHT,
        progress=None,
    )
    triton_rows_s = n / (time.perf_counter() - started)
    log(f"backtest Triton path: {n} rows, {triton_rows_s:9.1f} rows/s")
    results: Json = {
        "rows": n,
        "batch_size": MAX_BATCH,
        "in_flight": DEFAULT_IN_FLIGHT,
        "model_versions": sorted(versions),
        "triton_rows_per_s": triton_rows_s,
    }
    for threads in (1, 2):
        rate, confidence = await asyncio.to_thread(_in_process_rows, tensors, threads, MAX_BATCH)
        results[f"in_process_threads{threads}_rows_per_s"] = rate
        results[f"max_abs_confidence_diff_threads{threads}"] = float(
            np.abs(confidence - outputs["confidence"]).max()
        )
        log(f"backtest in-process {threads} thread(s): {rate:9.1f} rows/s")
    best = max(results[f"in_process_threads{t}_rows_per_s"] for t in (1, 2))
    results["triton_over_in_process_threads1"] = (
        triton_rows_s / results["in_process_threads1_rows_per_s"]
    )
    results["triton_over_in_process_best"] = triton_rows_s / best
    return results


# --- report -----------------------------------------------------------------------------------
def machine() -> Json:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError):
        memory = Path("/proc/meminfo").read_text().splitlines()[0].split(":", 1)[1].strip()
    return {
        "platform": platform.platform(),
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory": memory,
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def ratios(results: Json) -> Json:
    """engine/baseline and Triton/ceiling, from whatever parts ran."""
    out: Json = {}
    warm = results.get("warm")
    if warm:
        for c in CONCURRENCY:
            e, b = warm["engine"].get(str(c), {}), warm["baseline"].get(str(c), {})
            if e.get("requests") and b.get("requests"):
                out[f"warm_c{c}_throughput_engine_over_baseline"] = (
                    e["throughput_per_s"] / b["throughput_per_s"]
                )
                out[f"warm_c{c}_p50_baseline_over_engine"] = b["p50_ms"] / e["p50_ms"]
                out[f"warm_c{c}_p99_baseline_over_engine"] = b["p99_ms"] / e["p99_ms"]
    cold = results.get("cold")
    if cold:
        out["cold_median_baseline_over_engine"] = (
            cold["baseline"]["median_ms"] / cold["engine"]["median_ms"]
        )
        out["cold_p90_baseline_over_engine"] = cold["baseline"]["p90_ms"] / cold["engine"]["p90_ms"]
    for n, sweep in (results.get("sweep") or {}).items():
        out[f"sweep_n{n}_baseline_over_engine"] = (
            sweep["baseline"]["median_s"] / sweep["engine"]["median_s"]
        )
    perf, ceil = results.get("perf"), results.get("ceiling")
    if perf and ceil:
        rate = {r["concurrency"]: r.get("infer_per_s", 0.0) for r in perf}
        out["triton_c1_over_ceiling_batch1"] = rate[1] / ceil["batch1_best"]
        out["triton_c32plus_over_ceiling_batch64"] = max(rate[32], rate[64]) / ceil["batch64_best"]
    off = results.get("batching_off")
    if perf and off:
        on_rate = {r["concurrency"]: r.get("infer_per_s", 0.0) for r in perf}
        off_rate = {r["concurrency"]: r.get("infer_per_s", 0.0) for r in off}
        for c in (32, 64):
            if off_rate[c]:
                out[f"batching_on_over_off_c{c}"] = on_rate[c] / off_rate[c]
    backtest = results.get("backtest")
    if backtest:
        out["backtest_triton_over_in_process"] = backtest["triton_over_in_process_threads1"]
    return out


def _save(fig: Any, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def plot_throughput_latency(results: Json, path: Path) -> None:
    series: list[tuple[str, str, list[tuple[int, float, float, float]]]] = []
    for name, style in (("engine", "o-"), ("baseline", "s-")):
        points = (results.get("warm") or {}).get(name, {})
        series.append(
            (
                f"{name} (HTTP, warm)",
                style,
                [
                    (c, p["throughput_per_s"], p["p50_ms"], p["p99_ms"])
                    for c in CONCURRENCY
                    if (p := points.get(str(c))) and p.get("requests")
                ],
            )
        )
    for key, label, style in (
        ("perf", "raw Triton (gRPC, dynamic batching)", "^--"),
        ("batching_off", "raw Triton (no dynamic batching)", "v:"),
    ):
        rows = results.get(key) or []
        series.append(
            (
                label,
                style,
                [
                    (r["concurrency"], r["infer_per_s"], r["p50_ms"], r["p99_ms"])
                    for r in rows
                    if "infer_per_s" in r
                ],
            )
        )
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, index, title in ((axes[0], 2, "p50"), (axes[1], 3, "p99")):
        for label, style, points in series:
            if not points:
                continue
            ax.plot([p[1] for p in points], [p[index] for p in points], style, label=label)
            for p in points:
                ax.annotate(f"c={p[0]}", (p[1], p[index]), fontsize=6, alpha=0.7)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("throughput (requests or inferences / s)")
        ax.set_ylabel(f"{title} latency (ms)")
        ax.grid(True, which="both", alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle("/api/predict: engine vs seed-style baseline vs raw Triton signal_ensemble")
    fig.tight_layout()
    _save(fig, path)


def plot_sweep(results: Json, path: Path) -> None:
    sweep = results.get("sweep") or {}
    cold = results.get("cold") or {}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name, style in (("engine", "o-"), ("baseline", "s-")):
        ns = sorted(int(n) for n in sweep)
        points = [(1, cold[name]["median_ms"] / 1e3)] if name in cold else []
        lows, highs = [0.0] * len(points), [0.0] * len(points)
        for n in ns:
            r = sweep[str(n)][name]
            points.append((n, r["median_s"]))
            lows.append(r["median_s"] - r["min_s"])
            highs.append(r["max_s"] - r["median_s"])
        if points:
            ax.errorbar(
                [p[0] for p in points],
                [p[1] for p in points],
                yerr=[lows, highs],
                fmt=style,
                capsize=3,
                label=name,
            )
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("symbols with a new bar (N; N=1 is the cold test)")
    ax.set_ylabel("COMMIT to the last fresh answer (s)")
    ax.set_title(f"bar close: median and min-max, {SWEEP_CONCURRENCY} client tasks")
    ax.grid(True, which="both", alpha=0.3)
    if ax.get_legend_handles_labels()[0]:
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no cold/sweep results in this run", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    _save(fig, path)


def summary(results: Json) -> str:
    lines = ["", "== serving benchmark summary =="]
    warm = results.get("warm")
    if warm:
        lines.append(
            f"{'warm':8s} {'engine req/s p50/p99 ms':>32s} {'baseline req/s p50/p99 ms':>32s}"
        )
        for c in CONCURRENCY:
            cells = []
            for name in ("engine", "baseline"):
                p = warm[name].get(str(c), {})
                cells.append(
                    f"{p.get('throughput_per_s', 0):9.1f} {p.get('p50_ms', float('nan')):8.2f}"
                    f" {p.get('p99_ms', float('nan')):9.2f}"
                )
            lines.append(f"  c={c:<4d} {cells[0]:>32s} {cells[1]:>32s}")
    cold = results.get("cold")
    if cold:
        for name in ("engine", "baseline"):
            lines.append(
                f"cold {name:8s} median {cold[name]['median_ms']:8.1f} ms  p90 "
                f"{cold[name]['p90_ms']:8.1f} ms  stale answers {cold[name]['stale_answers']}"
            )
    for n, sweep in (results.get("sweep") or {}).items():
        for name in ("engine", "baseline"):
            r = sweep[name]
            lines.append(
                f"sweep N={n:<5s} {name:8s} median {r['median_s']:7.2f} s "
                f"(min {r['min_s']:.2f}, max {r['max_s']:.2f})  retries {r['retries']}"
            )
    ceil = results.get("ceiling")
    if ceil:
        lines.append(
            f"in-process ceiling: batch 1 {ceil['batch1_best']:.0f}/s, batch 64 "
            f"{ceil['batch64_best']:.0f}/s"
        )
    backtest = results.get("backtest")
    if backtest:
        lines.append(
            f"backtest rows/s: Triton {backtest['triton_rows_per_s']:.0f}, in-process (1 thread) "
            f"{backtest['in_process_threads1_rows_per_s']:.0f}"
        )
    lines.append("ratios:")
    lines.extend(f"  {k:48s} {v:8.2f}" for k, v in results.get("ratios", {}).items())
    return "\n".join(lines)


def write_json(record: Json, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(record, indent=2, default=str))
    os.replace(tmp, path)


# --- the run ----------------------------------------------------------------------------------
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=N_MAX, help=f"1..{N_MAX}")
    parser.add_argument("--seconds", type=float, default=8.0, help="per warm point")
    parser.add_argument("--repeats", type=int, default=3, help="per sweep size and service")
    parser.add_argument("--cold-trials", type=int, default=20)
    parser.add_argument("--perf-interval-ms", type=int, default=2000)
    parser.add_argument("--only", default=",".join(PARTS), help=f"comma-separated of {PARTS}")
    args = parser.parse_args()
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        parser.error(f"--only: unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    if not 1 <= args.symbols <= N_MAX:
        parser.error(f"--symbols must be within 1..{N_MAX}")
    if args.repeats < 1 or args.cold_trials < 1:
        parser.error("--repeats and --cold-trials must be at least 1")

    started = datetime.now(UTC)
    info = machine()
    log(f"serving benchmark: parts {', '.join(parts)}; {args.symbols} symbols; {info['cpus']} cpus")
    try:
        results = asyncio.run(run(args, parts))
    except asyncio.CancelledError:
        log("stopped; servers stopped and benchmark symbols removed, nothing written")
        return 143
    results["ratios"] = ratios(results)
    info["load_average_at_end"] = os.getloadavg()
    record = {
        "started": started.isoformat(timespec="seconds"),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(
            [Path(sys.executable).name, "-m", "bench.serving_bench", *sys.argv[1:]]
        ),
        "machine": info,
        "options": {
            "symbols": args.symbols,
            "seconds": args.seconds,
            "repeats": args.repeats,
            "cold_trials": args.cold_trials,
            "perf_interval_ms": args.perf_interval_ms,
            "parts": parts,
            "concurrency": CONCURRENCY,
            "perf_analyzer_concurrency": PA_CONCURRENCY,
            "sweep_concurrency": SWEEP_CONCURRENCY,
        },
        **results,
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(record, RESULTS / "serving.json")
    plot_throughput_latency(results, RESULTS / "serving_throughput_latency.png")
    plot_sweep(results, RESULTS / "serving_sweep.png")
    print(summary(results), flush=True)
    print(
        f"results in {RESULTS / 'serving.json'}, serving_throughput_latency.png, serving_sweep.png"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
