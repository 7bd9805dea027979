"""Seeding feature states in worker processes, so a cold start uses every core.

A seed replays a week of bars through every indicator in Python (about 15 ms for a 5m state);
the first start of a replica in front of 10,000 symbols seeds 10,000 of them (bench-scale), one
after another on the event loop's thread. Here a sweep with at least POOL_MIN_SEEDS seeds sends
them to a pool of `processes` spawned workers (measured 1.7x with two on this 2-core machine,
where the engine and Triton share the cores), while it reads the next keys' bars; fewer seeds,
or `processes` 1, run in a thread as before, since a pool costs about a second to start. The
workers are spawned, not forked (the API process runs threads: gRPC, asyncio's executor).

A worker gets the bars and the spec's JSON (decoded once per worker and spec) and returns the
state, pickled: the same object `IncrementalFeatures.seed` returns in-process, pointed back at
the engine's spec (the copy that came with it would cost ~150 KB per state; bench-scale's RSS
showed it). A pool that
breaks (a worker killed) is replaced on the next seed, and that seed runs in a thread; where
workers cannot start at all, seeding stays in a thread.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import msgspec
import pandas as pd

from orchestrator.features.incremental import IncrementalFeatures
from orchestrator.features.spec import FeatureSpec
from orchestrator.inference.snapshots import spec_digest

log = logging.getLogger("orchestrator.barclose")

MAX_SPECS = 16  # served specs remembered encoded (one per timeframe and version)
POOL_MIN_SEEDS = 64  # about a second of seeding: below it a pool's start-up is not worth it

_worker_specs: dict[str, FeatureSpec] = {}  # in a worker: the specs decoded so far


def _seed_in_worker(digest: str, spec_json: bytes, bars: pd.DataFrame) -> IncrementalFeatures:
    spec = _worker_specs.get(digest)
    if spec is None:
        spec = _worker_specs[digest] = msgspec.json.decode(spec_json, type=FeatureSpec)
    return IncrementalFeatures.seed(bars, spec)


class Seeder:
    def __init__(self, processes: int) -> None:
        self.processes = max(1, processes)
        self._pool: ProcessPoolExecutor | None = None
        self._encoded: dict[int, tuple[FeatureSpec, str, bytes]] = {}  # by id(spec)
        self._pool_seeded = False  # a seed came back from the current pool

    def pooled(self, seeds: int) -> bool:
        """Whether a sweep with this many seeds sends them to the worker processes."""
        return self.processes > 1 and seeds >= POOL_MIN_SEEDS

    async def seed(
        self, bars: pd.DataFrame, spec: FeatureSpec, pooled: bool
    ) -> IncrementalFeatures:
        if not pooled:
            return await asyncio.to_thread(IncrementalFeatures.seed, bars, spec)
        digest, spec_json = self._encode(spec)
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.processes, mp_context=multiprocessing.get_context("spawn")
            )
            self._pool_seeded = False
        pool = self._pool
        try:
            features: IncrementalFeatures = await asyncio.get_running_loop().run_in_executor(
                pool, _seed_in_worker, digest, spec_json, bars
            )
        except BrokenProcessPool:
            self._broken(pool)
            return await asyncio.to_thread(IncrementalFeatures.seed, bars, spec)
        self._pool_seeded = True
        features.share_spec(spec)  # drop the copy of the spec that came with the state
        return features

    def _broken(self, pool: ProcessPoolExecutor) -> None:
        """A pool that seeded before is replaced (a worker was killed); one that never seeded
        cannot start workers here, and seeding stays in a thread from now on."""
        if self._pool is not pool:
            return  # another seed of the same pool got here first
        self._pool = None
        pool.shutdown(wait=False, cancel_futures=True)
        if self._pool_seeded:
            log.warning("a seeding worker died; the pool is replaced, this seed runs in a thread")
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
