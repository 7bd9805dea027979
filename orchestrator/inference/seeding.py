"""Seeding feature states in worker processes, so a cold start uses every core.

Seeds are computed a batch of symbols at a time (features/seed_batch.py: about 1 ms a state,
against ~13 ms one by one); the first start of a replica in front of 10,000 symbols still seeds
for seconds, on the event loop's thread between the reads of the next symbols' bars. Here a
sweep with at least POOL_MIN_SEEDS seeds sends its batches to a pool of `processes` spawned
workers while the loop reads the next batch's bars; fewer seeds, or `processes` 1, run in a
thread, since a pool costs a second or two to start. The workers are spawned, not forked (the
API process runs threads: gRPC, asyncio's executor).

A worker gets the bars and the spec's JSON (decoded once per worker and spec) and returns the
states, pickled: the objects `seed_states` returns in-process, each pointed back at the engine's
spec (the copy that came with it would cost ~150 KB per state; bench-scale's RSS showed it). A
pool that breaks (a worker killed) is replaced on the next batch, and that batch runs in a
thread; where workers cannot start at all, seeding stays in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import msgspec

from orchestrator.features.incremental import IncrementalFeatures
from orchestrator.features.seed_batch import Seeded, seed_states
from orchestrator.features.spec import FeatureSpec
from orchestrator.inference.snapshots import spec_digest
from orchestrator.marketdata.store import BarArrays

log = logging.getLogger("orchestrator.barclose")

MAX_SPECS = 16  # served specs remembered encoded (one per timeframe and version)
SEED_BATCH = 256  # keys seeded together (features/seed_batch.py), in a thread or a worker
POOL_MIN_SEEDS = SEED_BATCH  # a quarter second of seeding; a pool starts in a second or two
PARENT_CHECK_S = 1.0  # how often a worker checks that the engine process still runs

_worker_specs: dict[str, FeatureSpec] = {}  # in a worker: the specs decoded so far


def _exit_with_parent(parent_pid: int) -> None:
    """A worker's initializer: exits when the engine process is gone. A worker holds both ends
    of its task queue, so it never reads an end of file when the engine is killed (SIGKILL,
    or a stop that outwaits its grace period); found as idle ~240 MB workers left behind by
    stopped benchmark engines."""

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(PARENT_CHECK_S)
        os._exit(0)

    threading.Thread(target=watch, name="seeding-parent-watch", daemon=True).start()


def _seed_arrays(bars: list[BarArrays], spec: FeatureSpec) -> list[Seeded]:
    return seed_states([series.frame() for series in bars], spec)


def _seed_in_worker(digest: str, spec_json: bytes, bars: list[BarArrays]) -> list[Seeded]:
    spec = _worker_specs.get(digest)
    if spec is None:
        spec = _worker_specs[digest] = msgspec.json.decode(spec_json, type=FeatureSpec)
    return _seed_arrays(bars, spec)


class Seeder:
    def __init__(self, processes: int) -> None:
        self.processes = max(1, processes)
        self._pool: ProcessPoolExecutor | None = None
        self._encoded: dict[int, tuple[FeatureSpec, str, bytes]] = {}  # by id(spec)
        self._pool_seeded = False  # a seed came back from the current pool

    def pooled(self, seeds: int) -> bool:
        """Whether a sweep with this many seeds sends them to the worker processes."""
        return self.processes > 1 and seeds >= POOL_MIN_SEEDS

    async def seed(self, bars: list[BarArrays], spec: FeatureSpec, pooled: bool) -> list[Seeded]:
        """seed_states of the bars' frames, in a worker process when `pooled`, else in a thread.
        Arrays cross to the workers, not frames: pickling 256 frames a batch took the feeder
        thread a seventh of a cold start's samples, competing with the event loop."""
        if not pooled:
            return await asyncio.to_thread(_seed_arrays, bars, spec)
        digest, spec_json = self._encode(spec)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.processes,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_exit_with_parent,
                initargs=(os.getpid(),),
            )
            self._pool_seeded = False
        pool = self._pool
        try:
            seeded: list[Seeded] = await asyncio.get_running_loop().run_in_executor(
                pool, _seed_in_worker, digest, spec_json, bars
            )
        except BrokenProcessPool:
            self._broken(pool)
            return await asyncio.to_thread(_seed_arrays, bars, spec)
        self._pool_seeded = True
        for state in seeded:
            if isinstance(state, IncrementalFeatures):
                state.share_spec(spec)  # drop the copy of the spec that came with the state
        return seeded

    def _broken(self, pool: ProcessPoolExecutor) -> None:
        """A pool that seeded before is replaced (a worker was killed); one that never seeded
        cannot start workers here, and seeding stays in a thread from now on."""
        if self._pool is not pool:
            return  # another seed of the same pool got here first
        self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)
        if self._pool_seeded:
            log.warning("a seeding worker died; the pool is replaced, this batch runs in a thread")
        else:
            log.error(
                "seeding workers could not start; feature states are seeded in a thread "
                "(set SEED_PROCESSES=1 to stop trying)"
            )
            self.processes = 1

    def _encode(self, spec: FeatureSpec) -> tuple[str, bytes]:
        cached = self._encoded.get(id(spec))
        if cached is None or cached[0] is not spec:
            spec_json = spec.dumps()
            cached = (spec, spec_digest(spec), spec_json)
            if len(self._encoded) >= MAX_SPECS:  # versions switched many times: start over
                self._encoded.clear()
            self._encoded[id(spec)] = cached
        return cached[1], cached[2]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
