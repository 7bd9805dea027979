"""The processes under test: spawning the engine and the baseline in their own process groups,
pausing (SIGSTOP) the one not being measured, stopping them, waiting until they serve, and
waiting until our processes are idle so background work of one step never bills the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.serving.client import Http, TransportError
from bench.serving.common import log
from orchestrator.devstack import process
from orchestrator.settings import PROJECT_ROOT, RUN_DIR


def proc_table() -> dict[int, tuple[int, float]]:
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


def process_tree(roots: list[int], table: dict[int, tuple[int, float]] | None = None) -> set[int]:
    """`roots` and all their live descendants (Triton's Python stubs are children)."""
    table = proc_table() if table is None else table
    members = set(roots) & table.keys()
    grew = True
    while grew:
        more = {pid for pid, (parent, _) in table.items() if parent in members} - members
        members |= more
        grew = bool(more)
    return members


def cpu_seconds(roots: list[int], table: dict[int, tuple[int, float]] | None = None) -> float:
    """CPU time of `roots` and all their live descendants."""
    table = proc_table() if table is None else table
    return sum(table[pid][1] for pid in process_tree(roots, table))


def pin(roots: list[int], cores: set[int]) -> None:
    """Every thread of `roots`' process trees onto `cores` (Linux sets affinity per thread)."""
    for pid in process_tree(roots):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            for task in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setaffinity(int(task), cores)


_IDLE_FLOOR = [float("inf")]  # lowest CPU use of our servers ever seen (cores), over the run


async def wait_idle(roots: list[int], *, below: float = 0.15, timeout_s: float = 60.0) -> float:
    """Waits until our servers are quiet over two 0.3 s windows, so the previous step's
    background work (e.g. bar-close precomputation) does not bill the next. Quiet means below
    `below` cores, or near the lowest use ever seen when a server polls steadily even idle."""
    deadline = time.monotonic() + timeout_s
    calm, window = 0, 0.3
    started = time.monotonic()
    before = cpu_seconds(roots)
    while time.monotonic() < deadline:
        await asyncio.sleep(window)
        after = cpu_seconds(roots)
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
