"""The promotion test's live half against the real MariaDB and Triton: a challenger loaded beside
the champion (never served), scored in shadow on the bars after its training, waits while it has
too few settled outcomes and is rejected, unloaded, when it does not beat the champion (here it
is the champion's own models exported again: it cannot beat itself)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import timedelta

import msgspec
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpc_aio

from export.exporter import export_profiles
from export.promotion import REJECT, WAIT, Comparison
from export.promotion import TestResult as RulesResult
from export.shadow import judge_challenger
from orchestrator.demo.generator import generate_bars
from orchestrator.devstack.triton import TritonServer
from orchestrator.inference.client import Serving, SignalModels
from orchestrator.inference.models import ENSEMBLE
from orchestrator.ingest.writer import write_bars
from orchestrator.lifecycle.exported import exported_versions
from orchestrator.lifecycle.registry import StatusMoveError
from orchestrator.lifecycle.service import Lifecycle
from orchestrator.lifecycle.switch import Loaded, VersionLoadError
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe
from tests.conftest import TrainedRepository, serve_triton, until
from tests.lifecycle.conftest import registered, with_second_version

TIMEOUT_S = 30.0
# What a challenger that passed offline carries into its shadow period.
PASSED_OFFLINE = RulesResult(
    rows=500,
    versus_champion=Comparison("champion", 0.01, 0.02, 0.05, 0.04),
    versus_baseline=Comparison("har", 0.01, 0.03, 0.04, 0.03),
    coverage=0.80,
    ece=0.01,
    failures=[],
)


@pytest.fixture(scope="module")
def side_by_side(
    trained: TrainedRepository, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """A Triton over a copy of the suite's repository plus the same models exported again."""
    repository = with_second_version(trained, tmp_path_factory, "shadow-repository")
    yield from serve_triton(repository, tmp_path_factory, "triton-shadow")


def _ready(server: TritonServer) -> list[int]:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    index = client.get_model_repository_index(as_json=True)["models"]
    return sorted(
        int(m["version"]) for m in index if m["name"] == ENSEMBLE and m.get("state") == "READY"
    )


async def test_a_challenger_in_shadow_waits_then_is_rejected_and_unloaded(
    clean_db: Database, side_by_side: TritonServer
) -> None:
    db = clean_db
    # 20 days of bars after the models' training data (which ends 2025-06-30).
    bars = generate_bars("BTCUSD", days=60, end="2025-07-20", seed=11)
    frame = bars.reset_index().assign(symbol="BTCUSD", timeframe="5m")
    info = {"BTCUSD": SymbolInfo("BTCUSD", "crypto", 0.01, Timeframe.M5)}
    await write_bars(db, frame, info, show_progress=False)

    repository = side_by_side.model_repository
    registry, (champion, challenger) = await registered(db, repository)
    await registry.move(ENSEMBLE, champion, "champion", "test", "serves")
    offline = {"offline": msgspec.to_builtins(PASSED_OFFLINE)}
    await registry.move(ENSEMBLE, challenger, "challenger", "test", "passed", decision=offline)

    triton = grpc_aio.InferenceServerClient(f"127.0.0.1:{side_by_side.grpc_port}")
    try:
        lifecycle = Lifecycle(registry, triton, repository, TIMEOUT_S)
        await lifecycle.load_challenger(ENSEMBLE, challenger)
        assert _ready(side_by_side) == [champion, challenger]
        # The engine serves the champion although the challenger's number is higher.
        served = SignalModels(triton, TIMEOUT_S, ENSEMBLE)
        assert await served.served_version() == str(champion)

        async def judge(min_outcomes: int) -> str:
            decision = await judge_challenger(
                ENSEMBLE,
                db=db,
                triton=triton,
                timeout_s=TIMEOUT_S,
                repository=repository,
                min_shadow_outcomes=min_outcomes,
            )
            assert decision is not None
            return decision.verdict

        # Too few settled outcomes asked for: it waits, its numbers so far recorded.
        assert await judge(1_000_000) == WAIT
        waiting = {v.version: v for v in await registry.versions(ENSEMBLE)}[challenger]
        assert waiting.status == "challenger"
        assert waiting.decision is not None
        outcomes = waiting.decision["shadow_outcomes"]
        assert outcomes > 1000  # settled bars of the 20 days after its training
        assert f"{outcomes} of 1000000 live shadow outcomes" in waiting.status_reason
        assert _ready(side_by_side) == [champion, challenger]

        # Enough outcomes: the live test runs, and a copy of the champion cannot beat it.
        assert await judge(200) == REJECT
        rejected = {v.version: v for v in await registry.versions(ENSEMBLE)}[challenger]
        assert rejected.status == "rejected"
        assert rejected.status_reason.startswith("live shadow: does not beat the champion")
        assert rejected.decision is not None
        assert rejected.decision["shadow"]["rows"] == outcomes
        assert _ready(side_by_side) == [champion]  # unloaded; the champion serves alone
        config = (repository / ENSEMBLE / "config.pbtxt").read_text()
        assert f"specific {{ versions: [ {champion} ] }}" in config
        assert "serving_version" not in config
    finally:
        await triton.close()


async def test_a_challenger_triton_cannot_load_leaves_the_champion_serving(
    db: Database, side_by_side: TritonServer
) -> None:
    repository = side_by_side.model_repository
    registry, (champion, challenger) = await registered(db, repository)
    await registry.move(ENSEMBLE, champion, "champion", "test", "serves")
    artifact = repository / ENSEMBLE / str(challenger) / "range_gru.onnx"
    broken = artifact.with_suffix(".moved")
    artifact.rename(broken)  # the challenger's files are incomplete
    triton = grpc_aio.InferenceServerClient(f"127.0.0.1:{side_by_side.grpc_port}")
    try:
        lifecycle = Lifecycle(registry, triton, repository, TIMEOUT_S)
        await lifecycle.serve(ENSEMBLE, Loaded(champion))
        with pytest.raises(VersionLoadError, match=f"v{champion}, v{challenger}"):
            await lifecycle.load_challenger(ENSEMBLE, challenger)
        assert _ready(side_by_side) == [champion]
        served = SignalModels(triton, TIMEOUT_S, ENSEMBLE)
        assert await served.served_version() == str(champion)
    finally:
        broken.rename(artifact)
        await triton.close()


async def test_a_rollback_the_registry_refuses_switches_triton_back(
    db: Database, side_by_side: TritonServer
) -> None:
    """The rollback narrows Triton to the previous champion at once; when the registry then
    refuses the move (here another move changed the rollback target while the rollback waited
    for the set's lock), Triton is switched back and the champion serves again."""
    repository = side_by_side.model_repository
    registry, (previous, champion) = await registered(db, repository)
    triton = grpc_aio.InferenceServerClient(f"127.0.0.1:{side_by_side.grpc_port}")
    try:
        lifecycle = Lifecycle(registry, triton, repository, TIMEOUT_S)
        await lifecycle.promote(ENSEMBLE, previous, "test", "first")
        await lifecycle.promote(ENSEMBLE, champion, "test", "second")
        assert _ready(side_by_side) == [previous, champion]  # the previous one on standby
        async with db.transaction() as conn, conn.cursor() as cur:
            await cur.execute(
                "SELECT version FROM model_versions WHERE model_set = %s FOR UPDATE", (ENSEMBLE,)
            )
            rollback = asyncio.create_task(lifecycle.rollback(ENSEMBLE, "test", "bad skill"))
            # Triton narrowed; the registry's move waits for the lock.
            await until(
                lambda: _ready(side_by_side) == [previous] or rollback.done(),
                what="Triton narrowed to the previous champion",
            )
            assert _ready(side_by_side) == [previous]
            # Meanwhile another move retires the champion: the rollback target is no longer
            # the version Triton was narrowed to.
            await cur.execute(
                "INSERT INTO model_version_events (model_set, version, from_status, to_status, "
                "actor, reason) VALUES (%s, %s, 'champion', 'retired', 'other admin', 'race')",
                (ENSEMBLE, champion),
            )
        with pytest.raises(StatusMoveError, match="changed meanwhile"):
            await rollback
        assert _ready(side_by_side) == [previous, champion]
        served = SignalModels(triton, TIMEOUT_S, ENSEMBLE)
        assert await served.served_version() == str(champion)
        statuses = {v.version: v.status for v in await registry.versions(ENSEMBLE)}
        assert statuses[champion] == "champion"
    finally:
        await triton.close()


async def test_a_promotion_answers_from_the_next_bar_and_a_rollback_at_once(
    clean_db: Database, side_by_side: TritonServer, loaded: TrainedRepository
) -> None:
    """A promotion names the bar after the newest stored one as the first the promoted version
    answers; the bars before stay with the champion it replaced (on standby), so replicas that
    compute a bar at different moments still agree. The engine's long-lived client follows a
    promotion that leaves the same versions ready. A rollback applies to every bar at once."""
    repository = side_by_side.model_repository
    registry, (previous, champion) = await registered(clean_db, repository)
    newest = loaded.data[0].bars.index[-1].to_pydatetime()
    first_bar = newest + timedelta(minutes=5)
    triton = grpc_aio.InferenceServerClient(f"127.0.0.1:{side_by_side.grpc_port}")
    try:
        lifecycle = Lifecycle(registry, triton, repository, TIMEOUT_S)
        served = SignalModels(triton, TIMEOUT_S, ENSEMBLE)  # held for the whole test, as the app
        await lifecycle.promote(ENSEMBLE, previous, "test", "first")
        assert await served.serving() == Serving(str(previous))  # nothing to hand over from
        await lifecycle.promote(ENSEMBLE, champion, "test", "second")
        await until(lambda: _served_is(served, str(champion)), what="the promoted version served")
        assert await served.version_for(newest) == str(previous)
        assert await served.version_for(first_bar) == str(champion)
        promoted = next(v for v in await registry.versions(ENSEMBLE) if v.version == champion)
        assert promoted.status_reason == (
            f"second (answers from the bar opening {first_bar.isoformat()})"
        )
        # Back to the first: the same two versions stay ready, only the config says who serves.
        await lifecycle.promote(ENSEMBLE, previous, "test", "third")
        assert _ready(side_by_side) == [previous, champion]
        await until(lambda: _served_is(served, str(previous)), what="the third promotion seen")
        assert await served.version_for(newest) == str(champion)
        assert await served.version_for(first_bar) == str(previous)
        # A rollback does not wait for a bar: the bad version stops answering now.
        await lifecycle.rollback(ENSEMBLE, "test", "bad skill")
        await until(lambda: _served_is(served, str(champion)), what="the rollback seen")
        assert await served.version_for(newest) == str(champion)
        assert await served.version_for(first_bar) == str(champion)
        assert (await served.spec(str(champion))).fingerprint
    finally:
        await triton.close()


async def _served_is(models: SignalModels, version: str) -> bool:
    return await models.served_version() == version


async def test_a_challenger_loaded_before_the_named_bar_closes_keeps_it(
    clean_db: Database, side_by_side: TritonServer, loaded: TrainedRepository
) -> None:
    """A retrain's version loaded beside the champion right after a promotion: the reload keeps
    the promotion's named bar, so the bar forming at the promotion stays with the replaced
    champion. (Last in the module: it exports a third version into the shared repository.)"""
    repository = side_by_side.model_repository
    registry, (previous, champion) = await registered(clean_db, repository)
    first_bar = loaded.data[0].bars.index[-1].to_pydatetime() + timedelta(minutes=5)
    triton = grpc_aio.InferenceServerClient(f"127.0.0.1:{side_by_side.grpc_port}")
    try:
        lifecycle = Lifecycle(registry, triton, repository, TIMEOUT_S)
        await lifecycle.promote(ENSEMBLE, previous, "test", "first")
        await lifecycle.promote(ENSEMBLE, champion, "test", "second")
        export_profiles(loaded.models, repository.parent, profiles=("cpu",))
        retrained = [e for e in exported_versions(repository) if e.model_set == ENSEMBLE][-1]
        await registry.register(retrained, "test", "exported")
        await lifecycle.load_challenger(ENSEMBLE, retrained.version)
        assert _ready(side_by_side) == [previous, champion, retrained.version]
        served = SignalModels(triton, TIMEOUT_S, ENSEMBLE)
        assert await served.serving() == Serving(str(champion), str(previous), first_bar)
    finally:
        await triton.close()
