"""The load-generating side of the serving benchmark: a keep-alive aiohttp client (`Http`,
`Reply`, `TransportError`), closed loops driven by Python or by wrk (with its Lua script), the
warm-up pass over every symbol, and reading an answer's bar time. Both services are measured
only through these, so the engine's internals may change under the harness.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import tempfile
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import aiohttp
import numpy as np

from bench.serving.common import Json


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
  return wrk.format("GET", "%s" .. symbols[(i %% n) + 1] .. "%s")
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


def wrk_loop(
    base_url: str,
    symbols: list[str],
    concurrency: int,
    seconds: float,
    path: str = "/api/predict/",
    query: str = "",
) -> Json:
    """The same closed loop driven by wrk (C, one thread): the Python client costs about as much
    CPU per request as the engine itself, so on 2 cores it would cap what is measured. Each
    request asks for `path` + symbol + `query`."""
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % (", ".join(f'"{s}"' for s in symbols), path, query))
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


def parse_bar_time(raw: str) -> datetime:
    moment = datetime.fromisoformat(raw)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


async def bar_time_of(client: Http, symbol: str) -> datetime:
    response = await client.get(f"/api/predict/{symbol}")
    if response.status_code != 200:
        raise RuntimeError(f"{symbol}: {response.status_code} {response.text[:200]}")
    return parse_bar_time(response.json()["bar_time"])
