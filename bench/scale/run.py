"""One scale run: Triton once, then per universe size N (ascending, in the benchmark's own
database): add the symbols up to N, start fresh engine replicas, time the cold start (every key
seeded or refused for too little history), memory, and the warm bar-close sweeps (a new 5m bar
for all N symbols in one transaction, COMMIT until the replicas' counters hold N new
predictions). The engine is measured only through /api/stats, /proc and SQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from bench.serving.client import Http, TransportError
from bench.serving.common import REPOSITORY, Json, log
from bench.serving.market import BarBook, BarWriter, delete_symbols, seed
from bench.serving.services import (
    Service,
    cpu_seconds,
    pin,
    proc_table,
    spawn_service,
    wait_idle,
)
from orchestrator.devstack import process
from orchestrator.devstack.process import free_ports
from orchestrator.devstack.triton import TritonServer
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import RUN_DIR, DatabaseSettings

PREFIX = "BSC"
SERVED_TIMEFRAMES = 3  # the cpu profile serves 5m, 15m and 1h: three feature states per symbol
STATS_POLL_S = 0.1  # /api/stats also asks Triton for its statistics: not too often
COLD_TIMEOUT_S = 1800.0
SWEEP_TIMEOUT_S = 600.0


def names(count: int) -> list[str]:
    return [f"{PREFIX}{i:05d}" for i in range(count)]


# --native-bars: 15m and 1h series stored for each symbol (a week of 15m, four weeks of 1h bars:
# what a state of each needs, features/online.seed_bars). Resampled from 800 5m bars those keys
# are refused for too little history, so without them the run holds N states, not N x 3.
NATIVE_BARS = {Timeframe.M15: 700, Timeframe.H1: 700}
NATIVE_CHUNK = 500  # symbols written per transaction


async def seed_native(db: Database, symbols: list[str]) -> None:
    """Stores the NATIVE_BARS series of the symbols that lack them (kept between runs)."""
    for timeframe, bars in NATIVE_BARS.items():
        rows = await db.fetchall(
            "SELECT DISTINCT symbol FROM bars WHERE timeframe = %s AND symbol LIKE %s",
            (timeframe.value, f"{PREFIX}%"),
        )
        stored = {str(row[0]) for row in rows}
        missing = [s for s in symbols if s not in stored]
        for start in range(0, len(missing), NATIVE_CHUNK):
            log(f"storing {timeframe.value} bars: {start:,} of {len(missing):,} symbols")
            await seed(db, missing[start : start + NATIVE_CHUNK], bars, timeframe)


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


async def stored_book(db: Database) -> BarBook:
    """The newest 5m bar of every benchmark symbol already in the database (a rerun continues
    the series instead of seeding them again)."""
    rows = await db.fetchall(
        "SELECT b.symbol, b.ts, b.close FROM bars b JOIN ("
        " SELECT symbol, MAX(ts) AS ts FROM bars WHERE timeframe = '5m' AND symbol LIKE %s"
        " GROUP BY symbol) last ON last.symbol = b.symbol AND last.ts = b.ts"
        " WHERE b.timeframe = '5m'",
        (f"{PREFIX}%",),
    )
    import pandas as pd

    return BarBook({str(s): (pd.Timestamp(ts, tz="UTC"), float(c)) for s, ts, c in rows})


async def stats(client: Http) -> Json:
    reply = await client.get("/api/stats")
    if reply.status_code != 200:
        raise RuntimeError(f"/api/stats answered {reply.status_code}: {reply.text[:200]}")
    out: Json = reply.json()
    return out


def _phases(got: list[Json]) -> dict[str, float]:
    """Sweep time per phase (ms), summed over the replicas (/api/stats bar_close.phase_ms)."""
    out: dict[str, float] = {}
    for s in got:
        for name, ms in s["bar_close"].get("phase_ms", {}).items():
            out[name] = out.get(name, 0.0) + ms
    return out


def _accounted(s: Json) -> int:
    b = s["bar_close"]
    return int(b["predictions"] + b["not_enough_history"] + b["errors"])


async def _wait_up(service: Service, client: Http) -> None:
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        if service.proc.poll() is not None:
            break
        with contextlib.suppress(*TransportError):
            if (await client.get("/health")).status_code == 200:
                return
        await asyncio.sleep(0.1)
    raise RuntimeError(
        f"{service.name} did not start; last lines of {service.log_path}:\n"
        + process.log_tail(service.log_path)
    )


class Replicas:
    """Engine replicas sharing one Redis key space, started together."""

    def __init__(self, env: dict[str, str], count: int, cores: set[int] | None = None) -> None:
        self.env, self.count = env, count
        self.cores = cores  # where the replicas run (--pin); None: anywhere
        self.ports = free_ports(count)  # kept across restarts: a snapshot file is per port
        self.services: list[Service] = []
        self.clients: list[Http] = []

    async def start(self) -> float:
        """Seconds from spawning until every replica answers /health."""
        started = time.monotonic()
        for i, port in enumerate(self.ports):
            env = dict(self.env, API_PORT=str(port))
            self.services.append(
                spawn_service(
                    f"scale-engine-{i}", [sys.executable, "-m", "orchestrator", "serve"], port, env
                )
            )
            self.clients.append(Http(self.services[-1].url))
        if self.cores is not None:
            pin(self.pids, self.cores)
        await asyncio.gather(
            *(_wait_up(s, c) for s, c in zip(self.services, self.clients, strict=True))
        )
        return time.monotonic() - started

    async def stats(self) -> list[Json]:
        return list(await asyncio.gather(*(stats(c) for c in self.clients)))

    def rss_mb(self) -> list[float]:
        return [rss_mb(s.proc.pid) for s in self.services]

    @property
    def pids(self) -> list[int]:
        return [s.proc.pid for s in self.services]

    async def stop(self) -> None:
        for client in self.clients:
            await client.aclose()
        for service in self.services:
            service.stop()
        self.services, self.clients = [], []


async def cold_start(replicas: Replicas, n: int, spawned: float) -> Json:
    """Until every one of the N x 3 keys is accounted for (predicted, or refused for too little
    history) summed over the replicas (each computes the keys it claims)."""
    keys = SERVED_TIMEFRAMES * n
    deadline = time.monotonic() + COLD_TIMEOUT_S
    last_log = time.monotonic()
    while True:
        got = await replicas.stats()
        done = sum(_accounted(s) + s["shared"]["cached_predictions_used"] for s in got)
        received = sum(s["shared"]["predictions_received"] for s in got)
        if done >= keys:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"cold start: {done} of {keys} keys after {COLD_TIMEOUT_S:.0f} s")
        if time.monotonic() - last_log > 10:
            log(f"  cold start: {done:,} of {keys:,} keys accounted for")
            last_log = time.monotonic()
        await asyncio.sleep(0.1)
    seconds = time.monotonic() - spawned
    predicted = sum(s["bar_close"]["predictions"] for s in got)
    seeds = sum(s["bar_close"]["feature_seeds"] for s in got)
    return {
        "seconds": seconds,
        "keys": keys,
        "predicted": predicted,
        "not_enough_history": sum(s["bar_close"]["not_enough_history"] for s in got),
        "errors": sum(s["bar_close"]["errors"] for s in got),
        "feature_seeds": seeds,
        "received_from_other_replicas": received,
        "phase_ms": _phases(got),
    }


async def new_replica(
    stopped: Replicas,
    n: int,
    writer: BarWriter,
    book: BarBook,
    symbols: list[str],
    roots: list[int],
) -> Json:
    """One replica on a port no snapshot is named after, with the stopped replicas' snapshots
    in the folder (a pod added or replaced): its start, timed like a restart, then its first
    new bar, which shows whether it resumed its peers' states or seeded them."""
    log("  a new replica (no snapshot of its own; its peers' in the folder)")
    fresh = Replicas(stopped.env, 1, stopped.cores)
    try:
        spawned = time.monotonic()
        boot_s = await fresh.start()
        joined = await cold_start(fresh, n, spawned)
        await wait_idle(roots + fresh.pids)
        first = await warm_sweep(fresh, writer, book, symbols)
        (got,) = await fresh.stats()
    finally:
        await fresh.stop()
    joined |= {
        "boot_s": boot_s,
        "first_sweep_s": first["seconds"],
        "states_resumed": got["bar_close"]["states_resumed"],
        "states_resumed_from_peers": got["bar_close"]["states_resumed_from_peers"],
        "seeded_after_start": got["bar_close"]["feature_seeds"],
    }
    log(
        f"  new replica {joined['seconds']:.1f} s (boot {boot_s:.1f} s), first new bar "
        f"{first['seconds']:.2f} s ({joined['states_resumed_from_peers']:,} states from its "
        f"peers' snapshots, {joined['seeded_after_start']:,} seeded)"
    )
    return joined


def pids_named(*names: str) -> list[int]:
    """Processes whose command is one of `names` (the database and Redis servers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if (entry / "comm").read_text().strip() in names:
                    found.append(int(entry.name))
    return found


def cpu_by_server(groups: dict[str, list[int]]) -> dict[str, float]:
    table = proc_table()
    return {name: cpu_seconds(pids, table) for name, pids in groups.items()}


async def warm_sweep(
    replicas: Replicas,
    writer: BarWriter,
    book: BarBook,
    symbols: list[str],
    triton: list[int] | None = None,
) -> Json:
    """A new 5m bar for every symbol in one transaction; COMMIT until the replicas together
    counted len(symbols) new predictions, and until each replica holds them all (its own and
    those the other replicas' events carried). Also the CPU seconds each server spent from
    COMMIT until all were predicted: on this shared machine the wall time moves by half from
    hour to hour, the work done much less, so A/B comparisons read both."""
    groups = {
        "engine": replicas.pids,
        "triton": triton or [],
        "database": pids_named("mariadbd", "mysqld"),
        "redis": pids_named("redis-server"),
    }
    before = await replicas.stats()
    base = sum(s["bar_close"]["predictions"] for s in before)
    held = [s["bar_close"]["predictions"] + s["shared"]["predictions_received"] for s in before]
    rows, _ = book.advance(symbols)
    cpu_before = cpu_by_server(groups)
    sent, commit_ms = await writer.write(rows)
    computed_s = everywhere_s = None
    cpu_s: dict[str, float] = {}
    deadline = sent + SWEEP_TIMEOUT_S
    while everywhere_s is None:
        got = await replicas.stats()
        now = time.perf_counter()
        if computed_s is None and sum(s["bar_close"]["predictions"] for s in got) - base >= len(
            symbols
        ):
            computed_s = now - sent
            cpu_at = cpu_by_server(groups)
            cpu_s = {name: round(cpu_at[name] - cpu_before[name], 3) for name in groups}
        if computed_s is not None and all(
            s["bar_close"]["predictions"] + s["shared"]["predictions_received"] - h >= len(symbols)
            for s, h in zip(got, held, strict=True)
        ):
            everywhere_s = now - sent
        if now > deadline:
            raise RuntimeError(
                f"sweep of {len(symbols)} symbols unfinished after {SWEEP_TIMEOUT_S}s"
            )
        await asyncio.sleep(STATS_POLL_S)
    phases = _phases(got)
    for name, ms in _phases(before).items():
        phases[name] = phases.get(name, 0.0) - ms
    return {
        "seconds": computed_s,
        "everywhere_s": everywhere_s,
        "cpu_s": cpu_s,
        "phase_ms": phases,
        "commit_ms": commit_ms,
        "sweeps": [s["bar_close"]["sweeps"] for s in got],
        "claims_won": [s["shared"]["claims_won"] for s in got],
    }


@contextlib.contextmanager
def profiled(pid: int, path: Path, enabled: bool) -> Iterator[None]:
    """py-spy (on PATH or in the environment) samples the engine for the block, raw folded
    stacks to `path`."""
    beside = Path(sys.executable).with_name("py-spy")  # installed into the environment
    spy = (
        (shutil.which("py-spy") or (str(beside) if beside.exists() else None)) if enabled else None
    )
    proc = None
    if spy:
        proc = subprocess.Popen(
            [spy, "record", "-p", str(pid), "-r", "200", "-f", "raw", "-o", str(path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    elif enabled:
        log("  (py-spy not on PATH: no profile; pip install py-spy)")
    try:
        yield
    finally:
        if proc is not None:
            proc.send_signal(2)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)


async def timed_sweeps(
    replicas: Replicas,
    writer: BarWriter,
    book: BarBook,
    symbols: list[str],
    roots: list[int],
    repeats: int,
    label: str,
) -> list[Json]:
    """`repeats` warm sweeps, each once the machine is idle again."""
    runs = []
    for r in range(repeats):
        await wait_idle(roots + replicas.pids)
        sweep = await warm_sweep(replicas, writer, book, symbols, roots)
        runs.append(sweep)
        cpu = ", ".join(f"{name} {s:.2f}" for name, s in sweep["cpu_s"].items())
        log(
            f"  {label}, warm sweep {r + 1}/{repeats}: {sweep['seconds']:.2f} s COMMIT -> "
            f"{len(symbols):,} predicted, {sweep['everywhere_s']:.2f} s everywhere "
            f"(CPU s: {cpu})"
        )
    return runs


async def serial_sweeps(
    replicas: Replicas,
    writer: BarWriter,
    book: BarBook,
    symbols: list[str],
    roots: list[int],
    repeats: int,
) -> list[Json]:
    """The warm sweep with one sweep in flight at a time (SWEEPS_IN_FLIGHT=1, the engine
    before the sweeps overlapped), restarted from the snapshot like the overlapped sweeps it
    is compared with (`restart.warm_runs`): the same process history on both sides."""
    overlapped = replicas.env.get("SWEEPS_IN_FLIGHT")
    replicas.env["SWEEPS_IN_FLIGHT"] = "1"
    try:
        await replicas.stop()
        spawned = time.monotonic()
        await replicas.start()
        await cold_start(replicas, len(symbols), spawned)
        # Not timed: the first bar after a restart checks every resumed state against the store.
        await wait_idle(roots + replicas.pids)
        await warm_sweep(replicas, writer, book, symbols)
        return await timed_sweeps(
            replicas, writer, book, symbols, roots, repeats, "one sweep in flight"
        )
    finally:
        if overlapped is None:
            replicas.env.pop("SWEEPS_IN_FLIGHT", None)
        else:
            replicas.env["SWEEPS_IN_FLIGHT"] = overlapped


async def run(args: Any) -> Json:
    settings = DatabaseSettings.from_env()
    db = await Database.connect(settings)
    http_port, grpc_port, metrics_port = free_ports(3)
    triton = TritonServer(REPOSITORY, http_port, grpc_port, metrics_port, name="triton-bench-scale")
    triton_start = asyncio.create_task(asyncio.to_thread(triton.start))
    env = dict(
        os.environ,
        PYTHONUNBUFFERED="1",
        API_HOST="127.0.0.1",
        TRITON_HOST="127.0.0.1",
        TRITON_HTTP_PORT=str(http_port),
        TRITON_GRPC_PORT=str(grpc_port),
        TRITON_METRICS_PORT=str(metrics_port),
        RATE_LIMIT_PER_MINUTE="1000000000",
        INTERNAL_API_KEY="",
        JWT_SECRET="",
    )
    writer = await BarWriter.connect(settings)
    results: Json = {"sizes": {}}
    try:
        book = await stored_book(db)
        extra = sorted(set(book.last) - set(names(args.sizes[0])))
        if extra:  # the engine serves every stored symbol: start from the smallest universe
            log(f"removing {len(extra):,} benchmark symbols beyond N = {args.sizes[0]:,}")
            await delete_symbols(db, extra)
            for symbol in extra:
                del book.last[symbol]
        log(f"{len(book.last):,} benchmark symbols stored in {settings.database}")
        await triton_start
        log(f"tritonserver ready (log {triton.log_path})")
        roots = [pid for pid in (process.read_pid(triton.pid_path),) if pid]
        if args.pin:  # Triton on a core of its own, as on a machine of its own
            pin(roots, {1})
            log("pinned: tritonserver and its stubs on core 1, the engine on core 0")
        for n in args.sizes:
            symbols = names(n)
            missing = [s for s in symbols if s not in book.last]
            if missing:
                log(f"seeding {len(missing):,} symbols x {args.bars} 5m bars")
                added = await seed(db, missing, args.bars)
                book.last.update(added.last)
            if args.native_bars:
                await seed_native(db, symbols)
            log(f"N = {n:,}: starting {args.replicas} engine replica(s)")
            shutil.rmtree(SNAPSHOTS, ignore_errors=True)  # the first start is a cold one
            replicas = Replicas(
                dict(
                    env,
                    REDIS_KEY_PREFIX=f"bench-scale-{uuid.uuid4().hex[:12]}",
                    STATE_SNAPSHOT_DIR=str(SNAPSHOTS),
                ),
                args.replicas,
                {0} if args.pin else None,
            )
            spawned = time.monotonic()
            try:
                boot_s = await replicas.start()
                profile_cold = RESULTS_DIR / f"scale_profile_cold_n{n}.txt"
                with profiled(
                    replicas.pids[0], profile_cold, args.profile and n == max(args.sizes)
                ):
                    cold = await cold_start(replicas, n, spawned)
                cold["boot_s"] = boot_s
                log(
                    f"  cold start {cold['seconds']:.1f} s (boot {boot_s:.1f} s, "
                    f"{cold['feature_seeds']:,} states seeded, {cold['predicted']:,} predicted)"
                )
                if args.cold_only:
                    results["sizes"][str(n)] = {"cold": cold}
                    continue
                await wait_idle(roots + replicas.pids)
                profile = RESULTS_DIR / f"scale_profile_n{n}.txt"
                with profiled(replicas.pids[0], profile, args.profile and n == max(args.sizes)):
                    sweeps = await timed_sweeps(
                        replicas, writer, book, symbols, roots, args.repeats, "after a cold start"
                    )
                rss = replicas.rss_mb()
                log("  restarting (each replica writes its feature-state snapshot on the way out)")
                await replicas.stop()
                spawned = time.monotonic()
                restart_boot_s = await replicas.start()
                resumed = await cold_start(replicas, n, spawned)
                resumed["boot_s"] = restart_boot_s
                # The current bar's answers came from the shared cache; the states are needed
                # (resumed from the snapshot, or seeded) by the first new bar.
                await wait_idle(roots + replicas.pids)
                first = await warm_sweep(replicas, writer, book, symbols)
                got = await replicas.stats()
                resumed["first_sweep_s"] = first["seconds"]
                resumed["states_resumed"] = sum(s["bar_close"]["states_resumed"] for s in got)
                resumed["seeded_after_restart"] = sum(s["bar_close"]["feature_seeds"] for s in got)
                log(
                    f"  restart {resumed['seconds']:.1f} s (boot {restart_boot_s:.1f} s), "
                    f"first new bar {first['seconds']:.2f} s "
                    f"({resumed['states_resumed']:,} states resumed, "
                    f"{resumed['seeded_after_restart']:,} seeded)"
                )
                resumed["warm_runs"] = await timed_sweeps(
                    replicas, writer, book, symbols, roots, args.repeats, "after the restart"
                )
                serial = await serial_sweeps(replicas, writer, book, symbols, roots, args.repeats)
                await replicas.stop()
                joined = await new_replica(replicas, n, writer, book, symbols, roots)
                seconds = np.asarray([s["seconds"] for s in sweeps])
                results["sizes"][str(n)] = {
                    "cold": cold,
                    "restart": resumed,
                    "warm": {
                        "median_s": float(np.median(seconds)),
                        "min_s": float(seconds.min()),
                        "max_s": float(seconds.max()),
                        "everywhere_median_s": float(
                            np.median([s["everywhere_s"] for s in sweeps])
                        ),
                        "runs": sweeps,
                    },
                    "warm_serial": {
                        "median_s": float(np.median([s["seconds"] for s in serial])),
                        "runs": serial,
                    },
                    "rss_mb": rss,
                    "new_replica": joined,
                    "states": cold["feature_seeds"],
                }
                log(f"  RSS {', '.join(f'{v:,.0f} MB' for v in rss)}")
            finally:
                await replicas.stop()
        return results
    finally:
        await writer.close()
        with contextlib.suppress(Exception):
            await triton_start
        await asyncio.to_thread(triton.stop)
        await db.close()


RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"
SNAPSHOTS = RUN_DIR / "bench-scale-states"
