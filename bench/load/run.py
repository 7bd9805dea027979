"""The stack for `make load` and the locust run against it.

1. database: the configured server (`python -m orchestrator db up`, like `make db`); the demo
   symbols are loaded when missing; N generated symbols (LDX0000..) get ~700 5m bars each through
   the ingest writer (bench/serving's seeding), removed again at the end;
2. Redis at REDIS_URL and tritonserver (cpu profile) at TRITON_*_PORT: reused when they answer
   (e.g. `make run` is up), else started here (pid files and logs under .run/load/) and stopped at
   the end;
3. two API replicas (`python -m orchestrator serve --port`) on API_PORT and API_PORT+1 (the next
   free ports when one is taken, e.g. by `make run`'s API), rate limit out of the way;
   every symbol is asked for once on each replica before the measurement (a warm service);
4. a bar appender: every --replay-interval-s one new 5m bar for every generated symbol (INSERT +
   COMMIT) and, unless `make replay` runs, for the demo symbols (the market replay's own step);
   each COMMIT time goes to a commit log the WebSocket users read to time bar -> message;
5. locust headless (bench/load/locustfile.py) for --duration with --users users, of which
   --ws-users WebSocket subscribers; CPU time of our processes and of the whole machine sampled;
6. /api/stats of every replica, then everything started here is stopped, the generated symbols
   deleted, and the summary written (bench/load/report.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bench.serving.common import EXTRA_BARS, VERSION_DIR
from bench.serving.market import BarBook, BarWriter, delete_symbols, seed
from bench.serving.report import machine
from bench.serving.services import cpu_seconds, proc_table
from orchestrator.devstack import process
from orchestrator.devstack.redis import PrivateRedis, RedisSetupError, ping
from orchestrator.devstack.triton import TritonServer
from orchestrator.marketdata.db import Database
from orchestrator.settings import PROJECT_ROOT, RUN_DIR, Settings

LOAD_DIR = RUN_DIR / "load"
RESULTS = Path(__file__).parent / "results"
LOCUSTFILE = Path(__file__).parent / "locustfile.py"
PREFIX = "LDX"
MAX_GENERATED = 1000  # leftovers of an interrupted run are removed up to this many
DEMO_SYMBOLS = ("BTCUSD", "EURUSD", "XAUUSD")
Json = dict[str, Any]

_STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - _STARTED:6.1f}s] {message}", flush=True)


def seconds(duration: str) -> float:
    """locust's -t syntax: 3m, 90s, 1h30m, or plain seconds."""
    if re.fullmatch(r"\d+(\.\d+)?", duration):
        return float(duration)
    parts = re.findall(r"(\d+)\s*([hms])", duration)
    if not parts or "".join(n + u for n, u in parts) != duration.replace(" ", ""):
        raise SystemExit(f"error: cannot read duration {duration!r} (use e.g. 3m, 90s, 1h30m)")
    return float(sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts))


# --- CPU accounting -------------------------------------------------------------------------
def machine_busy_seconds() -> float:
    """CPU seconds all processes of the machine used so far (user+nice+system+irq+softirq)."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    values = [int(v) for v in fields]
    return (values[0] + values[1] + values[2] + values[5] + values[6]) / os.sysconf("SC_CLK_TCK")


SELF = "bar_appender_and_this_script"


class CpuSampler:
    """CPU cores used per group of our processes and by the whole machine, per sample."""

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self.groups = groups
        self.rows: list[tuple[float, dict[str, float]]] = []
        self.first = self.last = self._read()

    def _read(self) -> tuple[float, dict[str, float]]:
        table = proc_table()
        used = {k: cpu_seconds(list(pids), table) for k, pids in self.groups.items()}
        # This script alone: its descendants are the replicas, Triton and locust, counted above.
        used[SELF] = table.get(os.getpid(), (0, 0.0))[1]
        used["machine_total"] = machine_busy_seconds()
        return time.monotonic(), used

    def sample(self) -> None:
        now = self._read()
        then, self.last = self.last, now
        dt = now[0] - then[0]
        # A group's CPU time can only drop when a process of it exited: count that as 0.
        self.rows.append(
            (now[0] - self.first[0], {k: max(0.0, v - then[1][k]) / dt for k, v in now[1].items()})
        )

    def elapsed(self) -> float:
        return self.last[0] - self.first[0]

    def write(self, path: Path) -> dict[str, float]:
        """Writes the per-second table; returns the mean cores per group over the run."""
        keys = [*self.groups, SELF, "machine_total"]
        with path.open("w") as f:
            f.write("t_s\t" + "\t".join(keys) + "\n")
            for t, row in self.rows:
                f.write(f"{t:.1f}\t" + "\t".join(f"{row[k]:.3f}" for k in keys) + "\n")
        mean = {k: sum(row[k] for _, row in self.rows) / max(1, len(self.rows)) for k in keys}
        mean["other_processes"] = mean["machine_total"] - sum(mean[k] for k in (*self.groups, SELF))
        return mean


def _bar_close(stats: Any) -> Json:
    return (stats.get("bar_close") or {}) if isinstance(stats, dict) else {}


# --- services -------------------------------------------------------------------------------
@dataclass
class Stack:
    settings: Settings
    redis_url: str = ""
    # Our replicas' Redis keys and channels: one namespace per run, so nothing another stack or
    # an earlier run left in the same Redis (cached predictions, rate counters) is reused.
    redis_prefix: str = field(default_factory=lambda: f"tme-load-{os.getpid()}-{int(time.time())}")
    triton: TritonServer | None = None
    started_redis: PrivateRedis | None = None
    started_triton: bool = False
    apis: dict[int, Path] = field(default_factory=dict)  # port -> pid file, APIs we started
    notes: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        self.notes.append(message)
        log(message)


def _get_json(url: str, timeout_s: float = 5.0) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        body = exc.read()
        with contextlib.suppress(ValueError):
            return exc.code, json.loads(body)
        return exc.code, body.decode(errors="replace")[:300]
    except (urllib.error.URLError, OSError, ValueError) as exc:
        return 0, repr(exc)


def ensure_database_and_demo(stack: Stack) -> None:
    """`make db`'s piece (the configured server, else a private MariaDB; migrations), and the
    demo symbols when they are not in the store yet (`make demo-data`'s piece)."""
    subprocess.run([sys.executable, "-m", "orchestrator", "db", "up"], check=True)

    async def missing() -> list[str]:
        db = await Database.connect(stack.settings.db)
        try:
            rows = await db.fetchall(
                "SELECT symbol FROM bars WHERE timeframe = '5m' AND symbol IN (%s, %s, %s)"
                " GROUP BY symbol HAVING COUNT(*) > 8000",
                DEMO_SYMBOLS,
            )
        finally:
            await db.close()
        return sorted(set(DEMO_SYMBOLS) - {str(r[0]) for r in rows})

    absent = asyncio.run(missing())
    if absent:
        stack.note(f"loading demo data for {', '.join(absent)}")
        subprocess.run(
            [
                sys.executable,
                "-m",
                "orchestrator",
                "demo",
                "--quiet",
                "--symbols",
                ",".join(absent),
            ],
            check=True,
        )


def ensure_redis(stack: Stack) -> None:
    url = stack.settings.redis.url
    stack.redis_url = url
    if ping(url) is None:
        stack.note(f"Redis: reusing the one answering at {url}")
        return
    port = urlsplit(url).port or 6379
    private = PrivateRedis(port=port, base=LOAD_DIR / "redis")
    shutil.rmtree(private.base / "appendonlydir", ignore_errors=True)  # ours: start empty
    stack.started_redis = private  # set first: a start that fails half-way is still stopped
    try:
        private.start()
    except RedisSetupError:
        # Seen once on a loaded machine: the server was up but start() gave up; ask again.
        time.sleep(2.0)
        if ping(private.url) is not None:
            raise
        stack.note("Redis: start() reported a failure, but the private redis-server answers")
    stack.redis_url = private.url
    stack.note(f"Redis: started a private redis-server on {port} (.run/load/redis)")


def ensure_triton(stack: Stack) -> None:
    t = stack.settings.triton
    triton = TritonServer(
        model_repository=Path(t.model_repository).resolve(),
        http_port=t.http_port,
        grpc_port=t.grpc_port,
        metrics_port=t.metrics_port,
        run_dir=LOAD_DIR,
        name="triton",
    )
    stack.triton = triton
    if triton.is_ready():
        stack.note(f"Triton: reusing the one ready on {t.http_port}/{t.grpc_port}")
        return
    stack.started_triton = True  # set first: a start that fails half-way is still stopped
    triton.start()
    stack.note(f"Triton: started on {t.http_port}/{t.grpc_port}/{t.metrics_port} (.run/load)")


def api_ports(first: int, count: int) -> list[int]:
    """`count` ports from `first` up that nothing listens on (make run's API keeps its own)."""
    ports, port = [], first
    while len(ports) < count:
        if not process.port_in_use(port):
            ports.append(port)
        port += 1
    return ports


def start_apis(stack: Stack, ports: list[int]) -> list[str]:
    t = stack.settings.triton
    for port in ports:
        env = dict(
            os.environ,
            PYTHONUNBUFFERED="1",
            API_HOST="127.0.0.1",
            API_PORT=str(port),
            REDIS_URL=stack.redis_url,
            REDIS_KEY_PREFIX=stack.redis_prefix,
            TRITON_HOST=t.host,
            TRITON_HTTP_PORT=str(t.http_port),
            TRITON_GRPC_PORT=str(t.grpc_port),
            TRITON_METRICS_PORT=str(t.metrics_port),
            RATE_LIMIT_PER_MINUTE="1000000000",  # one client machine is every user here
            RETRAIN_DRIFT_COOLDOWN_H="0",  # generated bars drift by design: no retrain jobs
            INTERNAL_API_KEY="",
            JWT_SECRET="",
        )
        pid_path = LOAD_DIR / f"api-{port}.pid"
        stack.apis[port] = pid_path
        process.spawn(
            [sys.executable, "-m", "orchestrator", "serve", "--port", str(port)],
            env=env,
            log_path=LOAD_DIR / f"api-{port}.log",
            pid_path=pid_path,
            cwd=PROJECT_ROOT,
        )
    return [f"http://127.0.0.1:{port}" for port in ports]


def wait_ready(stack: Stack, hosts: list[str], symbol: str, timeout_s: float = 240.0) -> None:
    deadline = time.monotonic() + timeout_s
    for host, (port, pid_path) in zip(hosts, stack.apis.items(), strict=True):
        last: Any = ""
        while True:
            status, body = _get_json(f"{host}/health/ready")
            if status == 200:
                status, body = _get_json(f"{host}/api/predict/{symbol}", timeout_s=60)
                if status == 200:
                    break
            last = (status, body)
            if process.running_pid(pid_path, "orchestrator") is None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the API on {port} did not serve {symbol} ({last}); last lines of its log:\n"
                    + process.log_tail(LOAD_DIR / f"api-{port}.log")
                )
            time.sleep(0.5)


def stop(stack: Stack) -> None:
    for port, pid_path in stack.apis.items():
        if process.stop(pid_path, "orchestrator"):
            log(f"stopped the API on {port}")
    if stack.started_triton and stack.triton is not None and stack.triton.stop():
        log("stopped tritonserver")
    if stack.started_redis is not None and stack.started_redis.stop():
        log("stopped the private redis-server")


# --- data -----------------------------------------------------------------------------------
def _epoch(moment: Any) -> int:
    value = moment.to_pydatetime() if hasattr(moment, "to_pydatetime") else moment
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp())


@dataclass
class Appender:
    """One new 5m bar per symbol every `interval_s`; every COMMIT time to the commit log."""

    db: Database
    writer: BarWriter
    book: BarBook
    generated: list[str]
    replay: Any  # orchestrator.demo.replay.Replay for the demo symbols, or None
    commits: Path
    interval_s: float
    steps: int = 0
    step_ms: list[float] = field(default_factory=list)

    async def run(self, stop: asyncio.Event) -> None:
        with self.commits.open("a") as out:
            while not stop.is_set():
                began = time.monotonic()
                lines = []
                rows, times = self.book.advance(self.generated)
                await self.writer.write(rows)
                committed = time.time()
                lines += [f"{s}\t{_epoch(ts)}\t{committed:.6f}" for s, ts in times.items()]
                if self.replay is not None:
                    frame = await self.replay.step()
                    committed = time.time()
                    lines += [
                        f"{r.symbol}\t{_epoch(r.ts)}\t{committed:.6f}" for r in frame.itertuples()
                    ]
                out.write("\n".join(lines) + "\n")
                out.flush()
                self.steps += 1
                self.step_ms.append((time.monotonic() - began) * 1e3)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        stop.wait(), max(0.0, self.interval_s - (time.monotonic() - began))
                    )


async def warm(hosts: list[str], demo: list[str], generated: list[str]) -> float:
    """Every symbol once on every replica (5m; the demo symbols in every served timeframe), 8 at
    a time, so the measurement sees a running service rather than its first minute."""
    paths = [f"/api/predict/{s}" for s in generated]
    paths += [f"/api/predict/{s}?timeframe={tf}" for s in demo for tf in ("5m", "15m", "1h")]
    jobs = [host + path for host in hosts for path in paths]
    began = time.monotonic()
    gate = asyncio.Semaphore(8)
    bad: list[str] = []

    async def one(url: str) -> None:
        async with gate:
            status, _ = await asyncio.to_thread(_get_json, url, 60.0)
            if status != 200:
                bad.append(f"{url}: {status}")

    await asyncio.gather(*(one(url) for url in jobs))
    if bad:
        log(f"warm-up: {len(bad)} of {len(jobs)} not 200, e.g. {bad[:3]}")
    return time.monotonic() - began


# --- the run --------------------------------------------------------------------------------
async def measure(args: argparse.Namespace, stack: Stack, hosts: list[str], out: Path) -> Json:
    settings = stack.settings
    demo = list(DEMO_SYMBOLS)
    generated = [f"{PREFIX}{i:04d}" for i in range(args.symbols)]
    (out / "symbols.json").write_text(json.dumps({"demo": demo, "generated": generated}) + "\n")
    commits = out / "commits.tsv"
    commits.unlink(missing_ok=True)

    db = await Database.connect(settings.db)
    writer: BarWriter | None = None
    stop_appender = asyncio.Event()
    appender_task: asyncio.Task[None] | None = None
    locust: asyncio.subprocess.Process | None = None
    try:
        from orchestrator.features.online import required_bars
        from orchestrator.features.spec import FeatureSpec

        bars = required_bars(FeatureSpec.load(VERSION_DIR / "feature_spec.json")) + EXTRA_BARS
        log(f"seeding {len(generated)} generated symbols x {bars} 5m bars")
        await delete_symbols(db, [f"{PREFIX}{i:04d}" for i in range(MAX_GENERATED)])
        book = await seed(db, generated, bars)

        log(f"starting {len(hosts)} API replicas: {', '.join(hosts)}")
        start_apis(stack, [int(h.rsplit(":", 1)[1]) for h in hosts])
        await asyncio.to_thread(wait_ready, stack, hosts, generated[0])
        warm_s = await warm(hosts, demo, generated)
        log(f"replicas serve; warm-up (every symbol once per replica) took {warm_s:.1f} s")

        replay = None
        if process.running_pid(RUN_DIR / "replay.pid", "replay") is None:
            from orchestrator.demo.replay import Replay

            replay = Replay(db, demo)
        else:
            stack.note("`make replay` is running: it appends the demo symbols' bars, we don't")
        writer = await BarWriter.connect(settings.db)
        appender = Appender(db, writer, book, generated, replay, commits, args.replay_interval_s)
        appender_task = asyncio.create_task(appender.run(stop_appender))
        # Bars flow before the measurement too: a replica builds a symbol's feature state the
        # first time it claims one of its bars, so the first sweeps of fresh replicas are slow.
        log(f"bars flowing for {args.warmup_s:g} s before the measurement (warm-up)")
        await asyncio.sleep(args.warmup_s)
        stats_before = {host: _get_json(f"{host}/api/stats")[1] for host in hosts}
        seeds = [_bar_close(s).get("feature_seeds") for s in stats_before.values()]
        log(f"feature states built so far per replica: {seeds} (of {len(generated) + 3} symbols)")

        env = dict(
            os.environ,
            LOAD_HOSTS=",".join(hosts),
            LOAD_SYMBOLS_FILE=str(out / "symbols.json"),
            LOAD_WS_USERS=str(args.ws_users),
            LOAD_COMMITS_FILE=str(commits),
            LOAD_EXTRA_OUT=str(out / "extra.json"),
            LOAD_WS_OUT=str(out / "ws_messages.tsv"),
            LOAD_WAIT=args.wait,
            PYTHONUNBUFFERED="1",
        )
        command = [
            sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless",
            "-u", str(args.users), "-r", str(args.spawn_rate), "-t", args.duration,
            "--host", hosts[0], "--csv", str(out / "locust"), "--csv-full-history",
            "--only-summary", "--loglevel", "WARNING",
        ]  # fmt: skip
        log(f"locust: {' '.join(command[2:])}")
        groups = {
            "api": [process.read_pid(p) or 0 for p in stack.apis.values()],
            "triton": [process.read_pid(stack.triton.pid_path) or 0]
            if stack.started_triton and stack.triton
            else [],
        }
        load_before = os.getloadavg()
        began = datetime.now(UTC)
        steps_before = appender.steps
        with (out / "locust.log").open("wb") as locust_log:
            locust = await asyncio.create_subprocess_exec(
                *command, env=env, stdout=locust_log, stderr=subprocess.STDOUT, cwd=PROJECT_ROOT
            )
            groups["locust"] = [locust.pid]
            sampler = CpuSampler(groups)
            # Once a second: CPU of our processes and of the whole machine (cpu.tsv).
            while True:
                try:
                    await asyncio.wait_for(locust.wait(), 1.0)
                    break
                except TimeoutError:
                    sampler.sample()
        cpu = sampler.write(out / "cpu.tsv")
        wall = sampler.elapsed()
        rc = locust.returncode
        locust = None
        stop_appender.set()
        await appender_task
        appender_task = None
        log(
            f"locust exited with {rc}; {appender.steps - steps_before} bar steps appended meanwhile"
        )

        replica_stats = {host: _get_json(f"{host}/api/stats")[1] for host in hosts}
        return {
            "started_at": began.isoformat(timespec="seconds"),
            "wall_s": wall,
            "locust_exit_code": rc,
            "warm_up_s": warm_s,
            "symbols": {"demo": demo, "generated": len(generated), "bars_each": bars},
            "bar_steps": appender.steps - steps_before,
            "bar_steps_warm_up": steps_before,
            "bar_step_ms_median": sorted(appender.step_ms)[len(appender.step_ms) // 2]
            if appender.step_ms
            else None,
            "demo_bars_by": "this run" if replay is not None else "make replay",
            "cpu_cores_used": cpu,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "replica_stats": replica_stats,
            "replica_stats_before": stats_before,
        }
    finally:
        if locust is not None and locust.returncode is None:
            locust.terminate()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(locust.wait(), 10)
        stop_appender.set()
        if appender_task is not None:
            with contextlib.suppress(Exception):
                await appender_task
        stop(stack)
        with contextlib.suppress(Exception):
            await delete_symbols(db, generated)
            log(f"deleted the {len(generated)} generated symbols")
        if writer is not None:
            await writer.close()
        await db.close()


async def run_async(args: argparse.Namespace, stack: Stack, hosts: list[str], out: Path) -> Json:
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
    return await measure(args, stack, hosts, out)


def main(argv: list[str] | None = None) -> int:
    from bench.load.report import write_report

    parser = argparse.ArgumentParser(prog="python -m bench.load", description=__doc__)
    parser.add_argument("--duration", default=os.environ.get("LOAD_DURATION", "3m"))
    parser.add_argument("--users", type=int, default=int(os.environ.get("LOAD_USERS", "60")))
    parser.add_argument("--ws-users", type=int, default=int(os.environ.get("LOAD_WS_USERS", "20")))
    parser.add_argument("--spawn-rate", type=float, default=20.0)
    parser.add_argument("--symbols", type=int, default=200, help="generated symbols (LDX0000..)")
    parser.add_argument("--replay-interval-s", type=float, default=5.0)
    parser.add_argument(
        "--warmup-s", type=float, default=30.0, help="bars flowing before locust starts"
    )
    parser.add_argument("--wait", default="0.2,1.0", help="REST user's wait between requests")
    parser.add_argument("--out", default=str(RESULTS), help="results folder")
    parser.add_argument("--plot", default=str(PROJECT_ROOT / "docs" / "img" / "load_run.png"))
    args = parser.parse_args(argv)
    if args.ws_users >= args.users:
        parser.error("--users must exceed --ws-users (the rest are REST users)")
    if not 1 <= args.symbols <= MAX_GENERATED:
        parser.error(f"--symbols must be 1..{MAX_GENERATED}")
    duration_s = seconds(args.duration)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    LOAD_DIR.mkdir(parents=True, exist_ok=True)
    stack = Stack(Settings.from_env())
    command = "make load" if os.environ.get("MAKELEVEL") else "python -m bench.load"
    try:
        ensure_database_and_demo(stack)
        ensure_redis(stack)
        ensure_triton(stack)
        hosts = [f"http://127.0.0.1:{p}" for p in api_ports(stack.settings.api.port, 2)]
        if hosts != [f"http://127.0.0.1:{stack.settings.api.port + i}" for i in range(2)]:
            stack.note(f"API_PORT/API_PORT+1 taken: the replicas listen on {', '.join(hosts)}")
        result = asyncio.run(run_async(args, stack, hosts, out))
    except BaseException:
        stop(stack)
        raise
    record: Json = {
        "command": command,
        "argv": sys.argv[1:],
        "settings": {
            "duration": args.duration,
            "duration_s": duration_s,
            "users": args.users,
            "ws_users": args.ws_users,
            "rest_users": args.users - args.ws_users,
            "spawn_rate": args.spawn_rate,
            "generated_symbols": args.symbols,
            "replay_interval_s": args.replay_interval_s,
            "warmup_s": args.warmup_s,
            "rest_wait_s": args.wait,
        },
        "git_commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip(),
        "machine": machine(),
        "hosts": hosts,
        "notes": stack.notes,
        **result,
    }
    summary = write_report(record, out, Path(args.plot))
    print(summary["markdown"])
    failures = summary["failures_total"]
    if failures:
        print(f"FAILED: {failures} failed requests/messages; see {out}/locust_failures.csv")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
