"""Seeding many states at once (features/seed_batch.py) against seeding each on its own.

The batch seeder runs incremental.py's recurrences across symbols with the same double
operations, so its states equal the scalar seeds: their inputs match to the last bit, and after
stepping on over new bars (through a weekend gap, flat bars, a flat stretch) they still match
each other and the batch pipeline (the test_incremental tolerances).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.features.incremental import IncrementalFeatures
from orchestrator.features.online import NotEnoughHistoryError, required_bars, seed_bars
from orchestrator.features.seed_batch import _python_sum, seed_states
from tests.features.test_incremental import (
    Market,
    assert_inputs_equal,
    assert_matches_batch,
    feed,
    market,
    random_bars,
)

__all__ = ["market"]  # the fixture, shared with test_incremental


def assert_same_state(got: IncrementalFeatures, want: IncrementalFeatures) -> None:
    a, b = got.inputs(), want.inputs()
    for name in ("seq", "tab", "ctx", "har", "season"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert (a.atr, a.close, a.bar_time) == (b.atr, b.close, b.bar_time)
    np.testing.assert_array_equal(got.raw_features(), want.raw_features())
    assert got.last_bar == want.last_bar


def flat_stretch(bars: pd.DataFrame, start: int, length: int) -> pd.DataFrame:
    """The same bars with `length` identical flat bars from `start`: windows of one value, a
    true range of 0, no gains or losses (every zero guard of the recurrences)."""
    out = bars.copy()
    price = float(out["close"].iloc[start - 1])
    out.iloc[start : start + length, :4] = price
    return out


def test_batch_seeds_equal_scalar_seeds_and_step_on_alike(market: Market) -> None:
    spec = market.spec
    need = required_bars(spec)
    extra = 200
    frames = [
        random_bars(seed_bars(spec) + extra + 40 * i, market.price, seed=100 + i) for i in range(5)
    ]
    frames.append(random_bars(need + extra, market.price, seed=7, gap_at=need - 30))
    frames.append(flat_stretch(random_bars(need + extra, market.price, seed=8), need - 60, 70))
    frames.append(flat_stretch(random_bars(need + extra, market.price, seed=9), need + 20, 30))
    # pandas-ta turns a flat Bollinger window's zero width into epsilon down the whole column,
    # which no state can (incremental._Bbands): those two are compared with the scalar seeds.
    against_batch = [True] * 6 + [False] * 2
    seeds = [frame.iloc[:-extra] for frame in frames]
    batch = seed_states(seeds, spec)
    for frame, seed, state, check in zip(frames, seeds, batch, against_batch, strict=True):
        assert isinstance(state, IncrementalFeatures)
        alone = IncrementalFeatures.seed(seed, spec)
        assert_same_state(state, alone)
        if check:
            assert_matches_batch(state, seed, spec)
        for t in range(len(seed), len(frame), 20):
            feed(state, frame.iloc[t : t + 20])
            feed(alone, frame.iloc[t : t + 20])
            assert_same_state(state, alone)
        if check:
            assert_matches_batch(state, frame, spec)


def test_short_frames_get_their_error_in_place(market: Market) -> None:
    spec = market.spec
    need = required_bars(spec)
    frames = [
        random_bars(need, market.price, seed=1),
        random_bars(need - 1, market.price, seed=2),
        random_bars(need + 5, market.price, seed=3),
    ]
    frames[2].iloc[-3, 3] = np.nan  # a non-finite close: seeded alone, as the scalar code does
    got = seed_states(frames, spec)
    assert isinstance(got[0], IncrementalFeatures)
    assert isinstance(got[1], NotEnoughHistoryError)
    assert (got[1].have, got[1].need) == (need - 1, need)
    assert isinstance(got[2], IncrementalFeatures)
    assert_inputs_equal(got[0].inputs(), IncrementalFeatures.seed(frames[0], spec).inputs())
    assert seed_states([], spec) == []


@pytest.mark.parametrize("scale", [1e-3, 1.0, 1e6])
def test_python_sum_is_the_builtin_sum(scale: float) -> None:
    rows = np.random.default_rng(5).standard_normal((200, 48)) * scale
    rows[0] = 0.1  # values whose sum rounds differently left to right and compensated
    got = _python_sum(rows)
    np.testing.assert_array_equal(got, [sum(row) for row in rows.tolist()])
