"""What a 5m feature state holds in memory (tracemalloc), seeded alone or in a batch.

10,000 symbols x 3 timeframes must fit one replica (issue 22): the bound below is today's size,
so a change that makes states bigger shows here; docs/benchmarks.md says where the bytes go
(the baselines' week of bar measures is ~24 KB of it).
"""

from __future__ import annotations

import gc
import tracemalloc
from collections.abc import Callable

from export.train import TrainConfig, spec_from_stats
from orchestrator.features.dataset import fit_normalisation
from orchestrator.features.incremental import IncrementalFeatures
from orchestrator.features.indicators import compute_features
from orchestrator.features.online import seed_bars
from orchestrator.features.seed_batch import seed_states
from tests.features.test_incremental import random_bars

STATES = 12
MAX_KB_PER_5M_STATE = 56


def _kb_per_state(build: Callable[[], list[object]]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        states = build()
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert len(states) == STATES
    return (after - before) / STATES / 1024


def test_a_5m_state_stays_within_its_budget_seeded_alone_or_together() -> None:
    mean, std = fit_normalisation(compute_features(random_bars(2_000, 100.0, seed=99)))
    spec = spec_from_stats(mean, std, TrainConfig())
    frames = [random_bars(seed_bars(spec), 100.0, seed=i) for i in range(STATES)]
    alone = _kb_per_state(lambda: [IncrementalFeatures.seed(f, spec) for f in frames])
    together = _kb_per_state(lambda: list(seed_states(frames, spec)))
    assert 24 < alone <= MAX_KB_PER_5M_STATE  # the week of bar measures alone is 24 KB
    assert together <= alone
