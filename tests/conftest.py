"""Session services for the suite: the real MariaDB (private instance unless MYSQL_* points at a
server) with a dedicated test database, and a real tritonserver on test ports. Whatever the
suite starts, it stops."""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import os
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pandas as pd
import pytest

from export.exporter import export_profiles
from export.train import SymbolData, TrainConfig, TrainedModels, prepare_symbol, train_all
from orchestrator.demo.generator import generate_bars
from orchestrator.devstack.mariadb import DatabaseSetupError, ensure_test_database
from orchestrator.devstack.process import free_ports
from orchestrator.devstack.redis import PrivateRedis, ping
from orchestrator.devstack.triton import TritonServer
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.migrate import migrate
from orchestrator.marketdata.resample import resample_bars
from orchestrator.marketdata.store import SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import PROJECT_ROOT, DatabaseSettings, TritonSettings

FIXTURES = Path(__file__).parent / "fixtures"
# Fixtures that start or need a server, a browser, the gateway build or trained models: a test
# that uses any of them (directly or through another fixture) is marked `servers`, and
# `make test-unit` runs everything else.
SERVER_FIXTURES = frozenset(
    {
        "db_settings",
        "redis_url",
        "triton_server",
        "model_server",
        "trained",
        "chromium",
        "gateway_build",
        "private_mariadb",  # a module's own MariaDB, which the module stops and starts
    }
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.servers)


TEST_DATABASE = os.environ.get("MYSQL_TEST_DATABASE", "trading_test")


def serve_triton(
    repository: Path, tmp_path_factory: pytest.TempPathFactory, name: str
) -> Iterator[TritonServer]:
    """A real tritonserver on free ports for the session; stopped afterwards."""
    http, grpc, metrics = free_ports(3)
    server = TritonServer(
        repository, http, grpc, metrics, run_dir=tmp_path_factory.mktemp(name), name=name
    )
    server.start()
    yield server
    server.stop()


SESSION_TRITONS = ("triton_server", "model_server")


@pytest.fixture(autouse=True)
def _session_triton_running(request: pytest.FixtureRequest) -> None:
    """A session Triton that exited (Triton 2.51 can die of SIGSEGV when a client it serves is
    killed mid-inference: orchestrator/inference/calls.py) is started again on its ports before
    the next test that uses it, as the deployment's restart policy would, with a warning that
    quotes its log; one crash costs at most the test it happened in."""
    for name in SESSION_TRITONS:
        if name not in request.fixturenames:
            continue
        server: TritonServer = request.getfixturevalue(name)
        if server.is_running():
            continue
        lines = server.log_path.read_text(errors="replace").splitlines()
        cause = next((line for line in reversed(lines) if "Signal (" in line), "no signal logged")
        warnings.warn(
            f"the session's {server.name} had exited ({cause}); started it again, "
            f"see {server.log_path}",
            stacklevel=1,
        )
        server.start()


async def _reset_schema(settings: DatabaseSettings) -> None:
    db = await Database.connect(settings)
    try:
        async with db.connection() as conn, conn.cursor() as cur:
            await cur.execute("SET FOREIGN_KEY_CHECKS = 0")
            for table in (
                "model_version_events",
                "model_versions",
                "backtest_runs",
                "bar_revisions",
                "bars",
                "symbols",
                "schema_migrations",
            ):
                await cur.execute(f"DROP TABLE IF EXISTS {table}")
            await cur.execute("SET FOREIGN_KEY_CHECKS = 1")
            await conn.commit()
        await migrate(db)
    finally:
        await db.close()


@pytest.fixture(scope="session")
def db_settings(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DatabaseSettings]:
    """The test database on this checkout's server. When MYSQL_HOST/MYSQL_PORT are left at their
    defaults and the server there is not usable (another checkout's stack, a server without the
    grant), a private MariaDB on a free port serves this session instead; settings chosen
    explicitly get a message naming the missing grant."""
    wanted = msgspec.structs.replace(DatabaseSettings.from_env(), database=TEST_DATABASE)
    default = DatabaseSettings()
    explicit = (wanted.host, wanted.port) != (default.host, default.port)
    fallback = None if explicit else tmp_path_factory.mktemp("mariadb")
    try:
        suite = ensure_test_database(wanted, fallback)
    except DatabaseSetupError as exc:
        pytest.exit(f"no test database: {exc}", returncode=3)
    print(f"test database {wanted.database}: {suite.note}")
    try:
        asyncio.run(_reset_schema(suite.settings))
        yield suite.settings
    finally:
        if suite.started is not None:
            suite.started.stop()


@pytest.fixture
async def db(db_settings: DatabaseSettings) -> AsyncIterator[Database]:
    database = await Database.connect(db_settings)
    yield database
    await database.close()


@pytest.fixture
async def clean_db(db: Database) -> Database:
    """The test database with no bars and no symbols."""
    async with db.transaction() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM symbol_calendars")
        await cur.execute("DELETE FROM bar_revisions")
        await cur.execute("DELETE FROM bars")
        await cur.execute("DELETE FROM symbols")
    return db


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """TEST_REDIS_URL when set (it must answer; the suite flushes that database), else a private
    redis-server on a free port for this session, so two checkouts never share keys."""
    configured = os.environ.get("TEST_REDIS_URL")
    if configured:
        reason = ping(configured)
        if reason is not None:
            pytest.exit(f"TEST_REDIS_URL={configured} does not answer: {reason}", returncode=3)
        yield configured
        return
    (port,) = free_ports(1)
    server = PrivateRedis(port=port, base=tmp_path_factory.mktemp("redis"))
    server.start()
    yield server.url
    server.stop()


@pytest.fixture
def redis_flushed(redis_url: str) -> str:
    """The session's Redis with no keys (tests that count shared state start from zero)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    client.flushdb()
    client.close()
    return redis_url


@pytest.fixture(scope="session")
def triton_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    yield from serve_triton(FIXTURES / "model_repository", tmp_path_factory, "triton-test")


@pytest.fixture(scope="session")
def triton_settings(triton_server: TritonServer) -> TritonSettings:
    return TritonSettings(
        host="127.0.0.1",
        http_port=triton_server.http_port,
        grpc_port=triton_server.grpc_port,
        metrics_port=triton_server.metrics_port,
        model_repository=str(triton_server.model_repository),
    )


def cli_env(settings: DatabaseSettings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        MYSQL_HOST=settings.host,
        MYSQL_PORT=str(settings.port),
        MYSQL_USER=settings.user,
        MYSQL_PASSWORD=settings.password,
        MYSQL_DATABASE=settings.database,
    )
    env.update(extra)
    return env


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        env=env,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


# --- trained models served by Triton (shared by tests/models and tests/api) ---

TINY = TrainConfig(epochs=1, folds=3, stride=6, xgb_rounds=40, show_progress=False)


@dataclass
class TrainedRepository:
    root: Path
    models: TrainedModels
    data: list[SymbolData]
    version: int
    models_15m: TrainedModels  # a second set, served side by side as signal_ensemble_15m etc.
    data_15m: list[SymbolData]

    @property
    def cpu(self) -> Path:
        return self.root / "cpu"

    @property
    def gpu(self) -> Path:
        return self.root / "gpu"


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> TrainedRepository:
    data = [
        prepare_symbol(s, generate_bars(s, days=40, seed=11), TINY) for s in ("BTCUSD", "EURUSD")
    ]
    models = train_all(data, TINY)
    root = tmp_path_factory.mktemp("model_repository")
    versions = export_profiles(models, root)
    tiny_15m = dataclasses.replace(TINY, timeframe=Timeframe.M15)
    data_15m = [
        prepare_symbol(d.symbol, resample_bars(d.bars, Timeframe.M15), tiny_15m) for d in data
    ]
    models_15m = train_all(data_15m, tiny_15m)
    export_profiles(models_15m, root)
    return TrainedRepository(root, models, data, versions["cpu"], models_15m, data_15m)


@pytest.fixture(scope="session")
def model_server(
    trained: TrainedRepository, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    yield from serve_triton(trained.cpu, tmp_path_factory, "triton-models")


@pytest.fixture
async def loaded(clean_db: Database, trained: TrainedRepository) -> TrainedRepository:
    """BTCUSD with the training bars, and SHORTUSD with too few bars to predict."""
    item = trained.data[0]
    frame = item.bars.reset_index().assign(symbol=item.symbol, timeframe="5m")
    info = {item.symbol: SymbolInfo(item.symbol, "crypto", 0.01, Timeframe.M5)}
    await write_bars(clean_db, frame, info, show_progress=False)
    short = frame.iloc[:200].assign(symbol="SHORTUSD")
    await write_bars(
        clean_db, short, {"SHORTUSD": SymbolInfo("SHORTUSD", "crypto", 0.01)}, show_progress=False
    )
    return trained


def next_bar_row(bars: pd.DataFrame, minutes: int = 5, move: float = 0.001) -> pd.DataFrame:
    """One BTCUSD 5m bar `minutes` after the last of `bars`, closing `move` higher, in the
    store's row format."""
    last = float(bars["close"].iloc[-1])
    return pd.DataFrame(
        {
            "ts": [bars.index[-1] + pd.Timedelta(minutes=minutes)],
            "symbol": ["BTCUSD"],
            "timeframe": ["5m"],
            "open": [last],
            "high": [last * 1.002],
            "low": [last * 0.999],
            "close": [last * (1 + move)],
            "volume": [10.0],
        }
    )


async def append_bar(
    db: Database, bars: pd.DataFrame, minutes: int = 5, move: float = 0.001
) -> pd.Timestamp:
    """Writes next_bar_row(...) to the store (a bar closes); returns its time."""
    row = next_bar_row(bars, minutes, move)
    info = {"BTCUSD": SymbolInfo("BTCUSD", "crypto", 0.01, Timeframe.M5)}
    await write_bars(db, row, info, show_progress=False)
    ts: pd.Timestamp = row["ts"].iloc[0]
    return ts


async def until(
    condition: Callable[[], object],
    *,
    what: str,
    timeout_s: float = 60.0,
    every_s: float = 0.02,
    abort: Callable[[], str | None] | None = None,
    detail: Callable[[], str] | None = None,
) -> Any:
    """Waits for `condition` (a value, or an awaitable of one) to be true and returns it. The
    timeout guards against a hang; it asserts nothing about how long the wait took. `abort`
    returns a reason to stop waiting at once (a process that exited), or None; `detail` adds
    what a failure message should show (the last state seen, a process's log)."""

    def failed(why: str) -> AssertionError:
        return AssertionError(why + (f"\n{detail()}" if detail is not None else ""))

    try:
        async with asyncio.timeout(timeout_s):
            while True:
                result = condition()
                if inspect.isawaitable(result):
                    result = await result
                if result:
                    return result
                reason = abort() if abort is not None else None
                if reason is not None:
                    raise failed(f"gave up waiting for {what}: {reason}")
                await asyncio.sleep(every_s)
    except TimeoutError:
        raise failed(f"timed out after {timeout_s} s waiting for {what}") from None
