"""Job tests run the real thing: API apps on the session's MariaDB, Redis and Triton, and real
`python -m orchestrator worker` processes that the tests start, freeze and kill."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from litestar.testing import AsyncTestClient

from orchestrator.api.app import create_app
from orchestrator.devstack.triton import TritonServer
from orchestrator.jobs.runs import Run, RunStore
from orchestrator.marketdata.db import Database
from orchestrator.settings import PROJECT_ROOT, ApiSettings, DatabaseSettings, Settings
from tests.api.conftest import api_settings
from tests.conftest import TrainedRepository, cli_env, until

# Fast failure detection for the tests: a worker silent for 3 s counts as dead, some live worker
# sweeps every second, progress reaches MySQL every 0.2 s.
JOB_ENV = {
    "JOB_HEARTBEAT_S": "3",
    "JOB_SWEEP_S": "1",
    "JOB_PROGRESS_INTERVAL_S": "0.2",
    "JOB_MAX_ATTEMPTS": "3",
}

# Ten days of the loaded BTCUSD bars: a plain backtest of a few seconds at most.
SHORT: dict[str, Any] = {
    "symbol": "BTCUSD",
    "start_date": "2025-06-10",
    "end_date": "2025-06-20",
    "strategy": "aggressive_filter",
    "params": {"fee_rate": 0.0002, "slippage": 0.0001},
}
# Every loaded bar after the warm-up, scored through Triton without the prediction cache, so an
# attempt is still running when the test reads "running" and kills its worker.
LONG: dict[str, Any] = {**SHORT, "start_date": "2025-05-26", "end_date": "2025-06-29"}
# A walk-forward run trains models with the default (full) configuration for tens of seconds
# before its first window: long enough to cancel or kill it at a known point.
WALK_FORWARD: dict[str, Any] = {**SHORT, "params": {"walk_forward": 2}}


def as_job(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "params": {**body.get("params", {}), "run_as_job": True}}


class Workers:
    """Worker processes of one test, each logging to its own file; all gone at teardown."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir = env, log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"worker-{len(self.procs) + 1}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-u", "-m", "orchestrator", "worker", "--no-prediction-cache"],
            env=self.env,
            cwd=PROJECT_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        self.procs.append(proc)
        return proc

    @staticmethod
    def kill(proc: subprocess.Popen[bytes]) -> None:
        """SIGKILL: no cleanup runs, as when a machine dies."""
        if proc.poll() is None:
            proc.send_signal(signal.SIGCONT)
            proc.kill()
        proc.wait(10)

    def kill_all(self) -> None:
        for proc in self.procs:
            self.kill(proc)

    def stop_all(self, timeout_s: float = 20.0) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
        deadline = time.monotonic() + timeout_s
        for proc in self.procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.kill(proc)

    def logs(self) -> str:
        parts = []
        for path in sorted(self.log_dir.glob("worker-*.log")):
            tail = path.read_text(errors="replace").splitlines()[-25:]
            parts.append(f"--- {path.name}\n" + "\n".join(tail))
        return "\n".join(parts)


@pytest.fixture
def job_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The job settings both the apps (read in create_app) and the workers use."""
    for name, value in JOB_ENV.items():
        monkeypatch.setenv(name, value)
    return dict(JOB_ENV)


@pytest.fixture
def settings(
    loaded: TrainedRepository,
    db_settings: DatabaseSettings,
    model_server: TritonServer,
    redis_flushed: str,
    job_env: dict[str, str],
) -> Settings:
    # The tests poll often; the rate limit is not what they are about.
    api = ApiSettings(rate_limit_per_minute=1_000_000)
    return api_settings(db_settings, model_server, redis_flushed, api=api)


@pytest.fixture
def workers(
    settings: Settings,
    db_settings: DatabaseSettings,
    model_server: TritonServer,
    job_env: dict[str, str],
    tmp_path: Path,
) -> Iterator[Workers]:
    env = cli_env(
        db_settings,
        REDIS_URL=settings.redis.url,
        TRITON_HOST="127.0.0.1",
        TRITON_HTTP_PORT=str(model_server.http_port),
        TRITON_GRPC_PORT=str(model_server.grpc_port),
        TRITON_METRICS_PORT=str(model_server.metrics_port),
        **job_env,
    )
    pool = Workers(env, tmp_path)
    yield pool
    pool.stop_all()


@pytest.fixture
async def runs(db: Database) -> RunStore:
    """The runs table, emptied: read directly to catch states between two API polls."""
    async with db.transaction() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM backtest_runs")
    return RunStore(db)


@asynccontextmanager
async def replica(settings: Settings) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    """One API replica (its own app, lifespan and connections) on the shared services."""
    async with AsyncTestClient(create_app(settings)) as client:
        yield client


async def wait_until(
    read: Callable[[], Awaitable[Run | None]],
    done: Callable[[Run], bool],
    *,
    what: str,
    workers: Workers | None = None,
    timeout_s: float = 120.0,
    every_s: float = 0.02,
) -> Run:
    """The run (read from MySQL) once `done`; a failure shows the last state and the workers'
    logs. The waiting is the suite's one `until`."""
    last: list[Run | None] = [None]

    async def finished() -> Run | None:
        last[0] = run = await read()
        return run if run is not None and done(run) else None

    def state() -> str:
        return f"last state {last[0]}\n{workers.logs() if workers is not None else ''}"

    return await until(finished, what=what, timeout_s=timeout_s, every_s=every_s, detail=state)


def freeze(proc: subprocess.Popen[bytes]) -> contextlib.AbstractContextManager[None]:
    """SIGSTOP for the block, SIGCONT after: the worker is held at whatever it was doing."""

    @contextlib.contextmanager
    def frozen() -> Iterator[None]:
        proc.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            proc.send_signal(signal.SIGCONT)

    return frozen()
