"""Mixed traffic against two (or more) API replicas: REST users and WebSocket subscribers.

Run by `make load` (bench/load/run.py), which starts the replicas, seeds the symbols and appends a
bar to every symbol every few seconds while this runs. Standalone, against a stack you run:

    LOAD_HOSTS=http://127.0.0.1:8080,http://127.0.0.1:8081 LOAD_SYMBOLS=BTCUSD,EURUSD,XAUUSD \
        .venv/bin/locust -f bench/load/locustfile.py --headless -u 40 -r 10 -t 1m

- `Traffic` (REST): predict 4, signals 3, history 2, indicators 1 (task weights); every request
  goes to a replica picked at random and to a symbol picked at random (the demo symbols, which
  have months of bars, get LOAD_DEMO_SHARE of requests and every served timeframe; the generated
  ones 5m). Only 2xx counts as success; nothing invalid is sent on purpose.
- `Subscriber` (WebSocket, LOAD_WS_USERS of the users, replicas alternating): keeps one
  /ws/{symbol} connection open and reports every message as a request of type "WS": the first
  message after connecting (time since the connect started), each new bar's prediction (time since
  the bar's COMMIT, from the commit log run.py writes), heartbeats. An error message, an
  unexpected close or 35 s of silence is a failure.

Environment: LOAD_HOSTS (comma-separated base URLs; default the --host), LOAD_SYMBOLS_FILE
(JSON {"demo": [...], "generated": [...]}) or LOAD_SYMBOLS (comma-separated), LOAD_WS_USERS (20),
LOAD_DEMO_SHARE (0.15), LOAD_WAIT ("0.2,1.0": seconds between a REST user's requests),
LOAD_COMMITS_FILE (commit log: "symbol<TAB>bar open epoch<TAB>commit epoch" lines),
LOAD_EXTRA_OUT (JSON written at the end: REST total over every endpoint, per-replica counts).
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import random
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import gevent
import websocket
from locust import FastHttpUser, User, between, constant, events, task
from locust.env import Environment
from locust.stats import StatsEntry

INDICATOR_SETS = ("rsi,macd,atr", "rsi", "atr,adx,bbands", "macd:8:21:5,stoch,ema:20,ema:50,vwap")
HORIZONS = ("all", "scalping", "intraday", "swing", "position")
STRATEGIES = ("balanced", "aggressive_filter", "conservative", "baseline")
SERVED_TIMEFRAMES = ("5m", "15m", "1h")
WS_SILENCE_S = 35.0  # heartbeats come every 15 s of silence; this much quiet is a failure


def _symbols() -> tuple[list[str], list[str]]:
    path = os.environ.get("LOAD_SYMBOLS_FILE")
    if path:
        data = json.loads(Path(path).read_text())
        return list(data.get("demo", [])), list(data.get("generated", []))
    listed = [s for s in os.environ.get("LOAD_SYMBOLS", "BTCUSD,EURUSD,XAUUSD").split(",") if s]
    return listed, []


DEMO, GENERATED = _symbols()
DEMO_SHARE = float(os.environ.get("LOAD_DEMO_SHARE", "0.15")) if GENERATED else 1.0
WAIT_MIN, WAIT_MAX = (float(x) for x in os.environ.get("LOAD_WAIT", "0.2,1.0").split(","))
REPLICA_COUNTS: dict[str, Counter[str]] = {}  # base URL -> requests / failures


def _hosts(environment: Environment) -> list[str]:
    raw = os.environ.get("LOAD_HOSTS") or environment.host or "http://127.0.0.1:8080"
    return [h.strip().rstrip("/") for h in raw.split(",") if h.strip()]


def _pick() -> tuple[str, str]:
    """(symbol, timeframe): demo symbols with any served timeframe, generated ones with 5m (they
    hold ~700 bars: enough for 5m predictions, not for 1h)."""
    if DEMO and (not GENERATED or random.random() < DEMO_SHARE):
        return random.choice(DEMO), random.choice(SERVED_TIMEFRAMES)
    return random.choice(GENERATED), "5m"


# --- REST -----------------------------------------------------------------------------------
class Traffic(FastHttpUser):
    wait_time = between(WAIT_MIN, WAIT_MAX)
    network_timeout = 30.0  # the gateway's timeout
    connection_timeout = 10.0

    def on_start(self) -> None:
        self.hosts = _hosts(self.environment)

    def _get(self, path: str, name: str, symbol: str | None = None) -> None:
        base = random.choice(self.hosts)
        counts = REPLICA_COUNTS.setdefault(base, Counter())
        counts["requests"] += 1
        with self.client.get(base + path, name=name, catch_response=True) as response:
            status = response.status_code
            if not 200 <= status < 300:
                counts["failures"] += 1
                detail = (response.text or "")[:200] if status else repr(response.error)
                response.failure(f"{base} {status}: {detail}")
                return
            if symbol is not None:  # predict/signals: the body names the symbol asked for
                body = response.json()
                if body.get("symbol") != symbol:
                    counts["failures"] += 1
                    response.failure(f"{base}: asked {symbol}, got {body.get('symbol')!r}")

    @task(4)
    def predict(self) -> None:
        symbol, tf = _pick()
        horizon = random.choice(HORIZONS)
        self._get(
            f"/api/predict/{symbol}?horizon={horizon}&timeframe={tf}",
            "/api/predict/[symbol]",
            symbol,
        )

    @task(3)
    def signals(self) -> None:
        symbol, tf = _pick()
        strategy = random.choice(STRATEGIES)
        self._get(
            f"/api/signals/{symbol}?timeframe={tf}&strategy={strategy}",
            "/api/signals/[symbol]",
            symbol,
        )

    @task(2)
    def history(self) -> None:
        symbol, tf = _pick()
        limit = random.choice((50, 100, 500))
        self._get(f"/api/history/{symbol}?limit={limit}&timeframe={tf}", "/api/history/[symbol]")

    @task(1)
    def indicators(self) -> None:
        symbol, tf = _pick()
        names = random.choice(INDICATOR_SETS)
        limit = random.choice((20, 100))
        self._get(
            f"/api/indicators/{symbol}?indicators={names}&timeframe={tf}&limit={limit}",
            "/api/indicators/[symbol]",
        )


# --- WebSocket ------------------------------------------------------------------------------
class CommitLog:
    """When each (symbol, bar open time) was committed, tailed from run.py's commit log."""

    def __init__(self, path: str | None) -> None:
        self.path = Path(path) if path else None
        self.offset = 0
        self.commits: dict[tuple[str, int], float] = {}
        self.lock = threading.Lock()  # a no-op under gevent's patching; kept for clarity

    def _read(self) -> None:
        if self.path is None or not self.path.exists():
            return
        with self.lock, self.path.open("rb") as f:
            f.seek(self.offset)
            chunk = f.read()
            end = chunk.rfind(b"\n") + 1  # only whole lines
            self.offset += end
        for line in chunk[:end].decode().splitlines():
            symbol, bar, committed = line.split("\t")
            self.commits[(symbol, int(bar))] = float(committed)

    def committed_at(self, symbol: str, bar: int, wait_s: float = 2.0) -> float | None:
        deadline = time.monotonic() + wait_s
        while True:
            found = self.commits.get((symbol, bar))
            if found is not None or self.path is None:
                return found
            self._read()
            found = self.commits.get((symbol, bar))
            if found is not None or time.monotonic() > deadline:
                return found
            gevent.sleep(0.05)


COMMITS = CommitLog(os.environ.get("LOAD_COMMITS_FILE"))
WS_COUNTS: Counter[str] = Counter()
WS_BAR_LOG: list[tuple[str, str, int, float, float]] = []  # (replica, symbol, bar, commit, recv)
_SUBSCRIBER_INDEX = itertools.count()


def _bar_epoch(raw: str) -> int:
    moment = datetime.fromisoformat(raw)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp())


class Subscriber(User):
    fixed_count = int(os.environ.get("LOAD_WS_USERS", "20"))
    wait_time = constant(0)

    def on_start(self) -> None:
        hosts = _hosts(self.environment)
        index = next(_SUBSCRIBER_INDEX)
        base = hosts[index % len(hosts)]  # replicas alternate, so every one streams
        # The first subscribers watch the demo symbols, the rest generated ones at random.
        self.symbol = DEMO[index] if index < len(DEMO) else _pick()[0]
        self.base = base
        self.url = "ws" + base.removeprefix("http") + f"/ws/{self.symbol}?timeframe=5m"
        self.ws: websocket.WebSocket | None = None

    def on_stop(self) -> None:
        if self.ws is not None:
            with contextlib.suppress(Exception):
                self.ws.close()
            self.ws = None

    def _report(
        self, kind: str, started: float, length: int = 0, exc: BaseException | None = None
    ) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=kind,
            response_time=max(0.0, (time.time() - started) * 1000.0),
            response_length=length,
            exception=exc,
            context={"url": self.url},
        )

    def _report_at(self, kind: str, started: float, ended: float, length: int) -> None:
        self.environment.events.request.fire(
            request_type="WS",
            name=kind,
            response_time=max(0.0, (ended - started) * 1000.0),
            response_length=length,
            exception=None,
            context={"url": self.url},
        )

    @task
    def listen(self) -> None:
        started = time.time()
        try:
            self.ws = websocket.create_connection(self.url, timeout=WS_SILENCE_S)
        except Exception as exc:
            self._report("WS connect", started, exc=exc)
            gevent.sleep(1.0)
            return
        self._report("WS connect", started)
        WS_COUNTS["connections"] += 1
        first = True
        try:
            while True:
                try:
                    raw = self.ws.recv()
                except websocket.WebSocketTimeoutException as exc:
                    self._report("WS message", started, exc=exc)
                    return
                except websocket.WebSocketConnectionClosedException as exc:
                    self._report("WS message", started, exc=exc)
                    return
                self._handle(raw, first, started)
                first = False
        finally:
            self.on_stop()

    def _handle(self, raw: str | bytes, first: bool, started: float) -> None:
        message: dict[str, Any] = json.loads(raw)
        kind = message.get("type")
        length = len(raw)
        WS_COUNTS[f"messages_{kind}"] += 1
        if kind == "error":
            self._report("WS message", time.time(), length, RuntimeError(f"{self.url}: {message}"))
        elif kind == "heartbeat":
            self._report("WS heartbeat", time.time(), length)
        elif kind != "prediction":
            self._report("WS message", time.time(), length, RuntimeError(f"unknown {kind!r}"))
        elif first:
            self._report("WS first message (since connect)", started, length)
        else:
            bar = _bar_epoch(message["bar_time"])
            received = time.time()
            committed = COMMITS.committed_at(self.symbol, bar)
            WS_BAR_LOG.append((self.base, self.symbol, bar, committed or 0.0, received))
            if committed is None:
                WS_COUNTS["bar_messages_without_commit_time"] += 1
                self._report("WS bar message (commit time unknown)", time.time(), length)
            else:
                self._report_at("WS bar message (since COMMIT)", committed, received, length)


# --- the end of the run ---------------------------------------------------------------------
@events.test_stop.add_listener
def _write_extra(environment: Environment, **_: Any) -> None:
    """The REST total over every endpoint (locust's "Aggregated" row mixes in WebSocket
    latencies), requests per replica, WebSocket counters."""
    out = os.environ.get("LOAD_EXTRA_OUT")
    if not out or environment.stats is None:
        return
    rest = StatsEntry(environment.stats, "REST total", "", use_response_times_cache=False)
    for (_, method), entry in environment.stats.entries.items():
        if method != "WS":
            rest.extend(entry)
    percentiles = (0.5, 0.9, 0.95, 0.99, 0.999)
    endpoints = {}
    for (name, method), entry in environment.stats.entries.items():
        endpoints[f"{method} {name}"] = {
            "type": method,
            "name": name,
            "requests": entry.num_requests,
            "failures": entry.num_failures,
            "rps": entry.total_rps,
            "avg_ms": entry.avg_response_time,
            "max_ms": entry.max_response_time,
            **{
                f"p{round(q * 1000) / 10:g}_ms": entry.get_response_time_percentile(q)
                for q in percentiles
            },
        }
    record = {
        "endpoints": endpoints,
        "rest_total": {
            "requests": rest.num_requests,
            "failures": rest.num_failures,
            "rps": rest.total_rps,
            "avg_ms": rest.avg_response_time,
            "max_ms": rest.max_response_time,
            **{
                f"p{round(q * 1000) / 10:g}_ms": rest.get_response_time_percentile(q)
                for q in percentiles
            },
        },
        "replicas": {base: dict(counts) for base, counts in REPLICA_COUNTS.items()},
        "ws": dict(WS_COUNTS),
    }
    Path(out).write_text(json.dumps(record, indent=2) + "\n")
    ws_out = os.environ.get("LOAD_WS_OUT")
    if ws_out:
        with open(ws_out, "w") as f:
            f.write("replica\tsymbol\tbar_epoch\tcommit_epoch\treceived_epoch\n")
            f.writelines("\t".join(map(str, row)) + "\n" for row in WS_BAR_LOG)
