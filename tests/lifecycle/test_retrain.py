"""A retrain from end to end, against the real MariaDB, Redis, Triton and worker processes:
the schedule queues it, its worker is killed in the middle of training, another worker retries
it; the champion serves throughout, the new version is installed once and whole, and the
promotion test's verdict is in the registry and in GET /api/models."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
import tritonclient.grpc as grpcclient

from export.install import set_models
from orchestrator.demo.generator import generate_bars
from orchestrator.devstack.triton import TritonServer
from orchestrator.inference.models import ENSEMBLE
from orchestrator.ingest.writer import write_bars
from orchestrator.jobs.runs import Run, RunStore
from orchestrator.lifecycle.registry import ModelRegistry
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import DatabaseSettings
from tests.api.conftest import api_settings
from tests.conftest import TrainedRepository, cli_env, serve_triton, until
from tests.jobs.conftest import JOB_ENV, Workers, replica, wait_until

# The suite's models were trained on 40 days of bars ending 2025-06-30; the store holds 60 days
# ending 2025-07-20, so the champion has 20 days it never saw to be judged on.
BARS_END = "2025-07-20"
EPOCHS, FOLDS = "1", "3"


@pytest.fixture(scope="module")
def repository_copy(
    trained: TrainedRepository, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """A Triton over a copy of the suite's repository (both profiles): the retrain writes to it."""
    root = tmp_path_factory.mktemp("retrain-repository")
    shutil.copytree(trained.cpu, root / "cpu", symlinks=True)
    shutil.copytree(trained.gpu, root / "gpu", symlinks=True)
    yield from serve_triton(root / "cpu", tmp_path_factory, "triton-retrain")


def _ready(server: TritonServer) -> list[int]:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    index = client.get_model_repository_index(as_json=True)["models"]
    return sorted(
        int(m["version"]) for m in index if m["name"] == ENSEMBLE and m.get("state") == "READY"
    )


def _numbered(path: Path) -> list[int]:
    return sorted(int(p.name) for p in path.iterdir() if p.is_dir() and p.name.isdigit())


def _training_children(staging_marker: str) -> list[int]:
    """Pids of processes whose command line names a retrain staging directory."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if staging_marker in cmdline and "export" in cmdline:
            pids.append(int(entry.name))
    return pids


async def test_scheduled_retrain_survives_a_killed_worker_and_keeps_the_champion(
    clean_db: Database,
    db_settings: DatabaseSettings,
    repository_copy: TritonServer,
    redis_flushed: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = clean_db
    async with db.transaction() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM model_version_events")
        await cur.execute("DELETE FROM model_versions")
        await cur.execute("DELETE FROM backtest_runs")
    bars = generate_bars("BTCUSD", days=60, end=BARS_END, seed=11)
    frame = bars.reset_index().assign(symbol="BTCUSD", timeframe="5m")
    info = {"BTCUSD": SymbolInfo("BTCUSD", "crypto", 0.01, Timeframe.M5)}
    await write_bars(db, frame, info, show_progress=False)

    live = repository_copy.model_repository
    champion = _numbered(live / ENSEMBLE)[-1]
    assert _ready(repository_copy) == [champion]
    env = cli_env(
        db_settings,
        REDIS_URL=redis_flushed,
        TRITON_HOST="127.0.0.1",
        TRITON_HTTP_PORT=str(repository_copy.http_port),
        TRITON_GRPC_PORT=str(repository_copy.grpc_port),
        TRITON_METRICS_PORT=str(repository_copy.metrics_port),
        MODEL_REPOSITORY=str(live),
        RETRAIN_EPOCHS=EPOCHS,
        RETRAIN_FOLDS=FOLDS,
        RETRAIN_SETS=ENSEMBLE,
        **JOB_ENV,
    )
    runs = RunStore(db)

    async def only_retrain() -> Run | None:
        found = await runs.retrains(ENSEMBLE)
        return found[0] if found else None

    # Worker 1 runs the schedule (every 2 s here; daily by default) and takes the retrain.
    scheduled = Workers({**env, "RETRAIN_CRON": "* * * * * */2"}, tmp_path)
    first = scheduled.start()
    try:
        run = await wait_until(
            only_retrain,
            lambda r: r.phase.startswith("training fold"),
            what="the scheduled retrain training its folds",
            workers=scheduled,
            timeout_s=180,
        )
        assert run.parameters.retrain is not None
        assert run.parameters.retrain.trigger == "schedule"
        marker = f".retrain-{ENSEMBLE}-{run.id}"
        assert _training_children(marker), "the training runs in a child process"
        Workers.kill(first)  # SIGKILL, mid-training
        # The child dies with its worker (PR_SET_PDEATHSIG): nothing trains on, unowned.
        await until(
            lambda: not _training_children(marker), what="the training child to die", timeout_s=10
        )
        assert _ready(repository_copy) == [champion]  # the champion serves throughout
        assert _numbered(live / ENSEMBLE)[-1] == champion  # nothing installed yet
    finally:
        scheduled.kill_all()

    # Worker 2 (no schedule) finds the run's heartbeat stale and retries it to the end.
    rescuers = Workers({**env, "RETRAIN_CRON": ""}, tmp_path / "rescue")
    (tmp_path / "rescue").mkdir()
    rescuers.start()
    try:
        done = await wait_until(
            only_retrain,
            lambda r: r.finished,
            what="the retried retrain to finish",
            workers=rescuers,
            timeout_s=400,
        )
    finally:
        rescuers.stop_all()
    assert done.status == "done", (done.error, rescuers.logs())
    assert done.attempts == 2
    assert done.result is not None
    outcome = msgspec.json.decode(done.result)
    new = champion + 1  # the killed attempt installed nothing, so no number was used up
    assert outcome["version"] == new
    assert outcome["champion"] == champion
    assert outcome["verdict"] in ("wait", "reject")
    assert outcome["offline_rows"] > 100  # the 20 days since the champion's training

    # Installed whole in both profiles, nothing staged left; the champion still serves, pinned.
    for profile in ("cpu", "gpu"):
        for name in set_models("5m"):
            if (live.parent / profile / name).is_dir():
                assert new in _numbered(live.parent / profile / name), (profile, name)
    assert (live / ENSEMBLE / str(new) / "model_card.json").is_file()
    assert not list(live.parent.glob(".retrain-*"))
    assert (
        f"specific {{ versions: [ {champion} ] }}" in (live / ENSEMBLE / "config.pbtxt").read_text()
    )
    assert _ready(repository_copy) == [champion]

    registry = {v.version: v for v in await ModelRegistry(db).versions_of(ENSEMBLE)}
    assert registry[champion].status == "champion"
    judged = registry[new]
    assert judged.status == ("challenger" if outcome["verdict"] == "wait" else "rejected")
    assert judged.decision is not None
    offline = judged.decision["offline"]
    assert offline["rows"] == outcome["offline_rows"]
    assert 0.0 <= offline["versus_champion"]["p_mse"] <= 1.0
    assert judged.trained_through is not None
    assert registry[champion].trained_through is not None
    # Trained on the newer bars (its last labelled row ends a position horizon before them).
    assert judged.trained_through > registry[champion].trained_through

    # GET /api/models shows the retrain and its verdict.
    settings = api_settings(db_settings, repository_copy, redis_flushed)
    triton = msgspec.structs.replace(settings.triton, model_repository=str(live))
    monkeypatch.setenv("RETRAIN_CRON", "")
    async with replica(msgspec.structs.replace(settings, triton=triton)) as client:
        sets = {s["model_set"]: s for s in (await client.get("/api/models")).json()["sets"]}
    entry = sets[ENSEMBLE]
    assert entry["champion"] == champion
    assert entry["last_retrain"]["run_id"] == done.id
    assert entry["last_retrain"]["outcome"]["version"] == new
    assert (live / ENSEMBLE / str(champion)).is_dir()
