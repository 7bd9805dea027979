"""Seeds in worker processes (inference/seeding.py) give the states a thread gives, and a pool
whose workers die is replaced without losing a batch."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from export.train import TrainConfig, spec_from_stats
from orchestrator.features.dataset import fit_normalisation
from orchestrator.features.incremental import IncrementalFeatures
from orchestrator.features.indicators import compute_features
from orchestrator.features.online import NotEnoughHistoryError, required_bars, seed_bars
from orchestrator.features.spec import FeatureSpec
from orchestrator.inference import seeding
from orchestrator.inference.seeding import POOL_MIN_SEEDS, Seeder
from orchestrator.marketdata.store import BarArrays
from tests.conftest import until
from tests.features.test_incremental import random_bars


@pytest.fixture(scope="module")
def spec() -> FeatureSpec:
    mean, std = fit_normalisation(compute_features(random_bars(4_000, 100.0, seed=99)))
    return spec_from_stats(mean, std, TrainConfig())


def _same_state(got: object, want: IncrementalFeatures) -> None:
    assert isinstance(got, IncrementalFeatures)
    a, b = got.inputs(), want.inputs()
    for name in ("seq", "tab", "ctx", "har", "season"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert (got.last_time, got.last_bar) == (want.last_time, want.last_bar)


def test_only_a_sweep_with_many_seeds_uses_the_workers() -> None:
    assert Seeder(2).pooled(POOL_MIN_SEEDS)
    assert not Seeder(2).pooled(POOL_MIN_SEEDS - 1)
    assert not Seeder(1).pooled(10 * POOL_MIN_SEEDS)  # one process: always a thread


async def test_a_worker_seeds_what_a_thread_seeds_and_a_dead_pool_is_replaced(
    spec: FeatureSpec,
) -> None:
    seeder = Seeder(2)
    series = [random_bars(seed_bars(spec), 100.0, seed=s) for s in (1, 2, 3)]
    short = random_bars(required_bars(spec) - 1, 100.0, seed=5)
    try:
        states = await seeder.seed(
            [BarArrays.of(bars) for bars in (*series, short)], spec, pooled=True
        )
        for bars, state in zip(series, states, strict=False):
            _same_state(state, IncrementalFeatures.seed(bars, spec))
            assert isinstance(state, IncrementalFeatures)
            assert state._spec is spec  # not the copy that came with it (~150 KB a state)
        assert isinstance(states[-1], NotEnoughHistoryError)  # in its place, from the worker
        pool = seeder._pool
        assert pool is not None
        for pid in list(pool._processes):  # the workers are killed (out of memory, say)
            os.kill(pid, signal.SIGKILL)
        # The batch that meets the broken pool still answers (in a thread); the next one
        # starts a new pool.
        _same_state(
            (await seeder.seed([BarArrays.of(series[0])], spec, pooled=True))[0],
            IncrementalFeatures.seed(series[0], spec),
        )
        _same_state(
            (await seeder.seed([BarArrays.of(series[1])], spec, pooled=True))[0],
            IncrementalFeatures.seed(series[1], spec),
        )
        assert seeder._pool is not None
        assert seeder._pool is not pool
    finally:
        seeder.close()


class _WorkersThatCannotStart(ProcessPoolExecutor):
    def __init__(self, workers: int, mp_context: Any, **_: Any) -> None:
        super().__init__(workers, mp_context=mp_context, initializer=os._exit, initargs=(3,))


async def test_where_workers_cannot_start_seeding_stays_in_a_thread(
    spec: FeatureSpec, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(seeding, "ProcessPoolExecutor", _WorkersThatCannotStart)
    seeder = Seeder(2)
    bars = random_bars(seed_bars(spec), 100.0, seed=4)
    try:
        _same_state(
            (await seeder.seed([BarArrays.of(bars)], spec, pooled=True))[0],
            IncrementalFeatures.seed(bars, spec),
        )
        assert seeder.processes == 1
        assert not seeder.pooled(10 * POOL_MIN_SEEDS)
    finally:
        seeder.close()


_ENGINE = """
import asyncio, pathlib, sys
from orchestrator.inference.seeding import Seeder
from orchestrator.marketdata.store import BarArrays
from tests.features.test_incremental import random_bars
from tests.inference.test_seeding import _spec
async def main():
    seeder = Seeder(2)
    await seeder.seed([BarArrays.of(random_bars(700, 100.0, seed=1))], _spec(), pooled=True)
    pids = " ".join(str(pid) for pid in seeder._pool._processes)
    pathlib.Path(sys.argv[1]).write_text(pids + "\\n")
    await asyncio.sleep(3600)
asyncio.run(main())
"""


def _spec() -> FeatureSpec:
    mean, std = fit_normalisation(compute_features(random_bars(4_000, 100.0, seed=99)))
    return spec_from_stats(mean, std, TrainConfig())


async def test_the_workers_exit_when_the_engine_process_is_killed(tmp_path: Path) -> None:
    """A killed engine (SIGKILL, or a stop that outwaited its grace period) leaves no seeding
    worker behind: each watches its parent and exits when it is gone."""
    told = tmp_path / "workers"
    engine = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _ENGINE,
        str(told),
        stdout=asyncio.subprocess.DEVNULL,  # no pipe a leftover worker would keep open
        cwd=Path(__file__).parents[2],
    )
    try:
        line = await until(
            lambda: told.exists() and told.read_text().endswith("\n") and told.read_text(),
            what="the engine to start its seeding workers",
        )
        workers = [int(pid) for pid in line.split()]
        assert workers  # the pool starts its workers as tasks need them: one here
        assert all(_alive(pid) for pid in workers)
    finally:
        engine.kill()
        await engine.wait()
    await until(lambda: not any(_alive(pid) for pid in workers), what="the workers to exit")


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited but not yet reaped by init, counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"
