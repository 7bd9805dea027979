"""Stepping many states by one bar together (features/step_batch.py) against update() alone.

The batch step replays the scalar recurrences over arrays, so after any number of bars each
state must equal its twin stepped by update(): the same inputs, raw features and every field
of every recurrence and window, to the last bit. The bars below include flat bars and flat
stretches (zero true range, flat windows), gaps and a week of bars, so every zero guard runs.
"""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd

from orchestrator.features.incremental import IncrementalFeatures, _Indicators
from orchestrator.features.online import seed_bars
from orchestrator.features.step_batch import steady, step_together
from tests.features.test_incremental import Market, feed, market, random_bars
from tests.features.test_seed_batch import assert_same_state, flat_stretch

__all__ = ["market"]


def _fields(ind: _Indicators) -> list[object]:
    """Every value a recurrence or window holds, in a fixed order."""
    out: list[object] = [list(ind.log_close)]
    for name in ind.__slots__:
        part = getattr(ind, name)
        if name == "log_close":
            continue
        for slot in type(part).__slots__:
            value = getattr(part, slot)
            if hasattr(value, "__slots__") and not isinstance(value, float):
                out.append([getattr(value, s) for s in type(value).__slots__])
            else:
                out.append(list(value) if hasattr(value, "maxlen") else value)
    return out


def _same_fields(a: _Indicators, b: _Indicators) -> None:
    for x, y in zip(_fields(a), _fields(b), strict=True):
        assert repr(x) == repr(y)  # NaN == NaN, and -0.0 apart from 0.0


def _bar(frame: pd.DataFrame, i: int) -> tuple[pd.Timestamp, float, float, float, float, float]:
    o, h, lo, c, v = frame[["open", "high", "low", "close", "volume"]].iloc[i].tolist()
    return frame.index[i], o, h, lo, c, v


def test_states_stepped_together_equal_states_stepped_alone(market: Market) -> None:
    spec = market.spec
    history = seed_bars(spec)
    steps = 60
    frames = [random_bars(history + steps, market.price, seed=200 + i) for i in range(5)]
    frames.append(flat_stretch(random_bars(history + steps, market.price, seed=7), history + 5, 30))
    frames.append(random_bars(history + steps, market.price, seed=8, gap_at=history + 10))
    together = [IncrementalFeatures.seed(f.iloc[:history], spec) for f in frames]
    alone = [copy.deepcopy(state) for state in together]
    for state in together:
        assert steady(state.indicators)
    for t in range(history, history + steps):
        errors = step_together(
            [(state, _bar(f, t)) for state, f in zip(together, frames, strict=True)]
        )
        assert errors == [None] * len(frames)
        for state, f in zip(alone, frames, strict=True):
            feed(state, f.iloc[t : t + 1])
    for got, want in zip(together, alone, strict=True):
        assert_same_state(got, want)
        _same_fields(got.indicators, want.indicators)
        np.testing.assert_array_equal(got.baseline.sums, want.baseline.sums)


def test_refused_and_young_states_are_stepped_as_update_steps_them(market: Market) -> None:
    spec = market.spec
    frame = random_bars(seed_bars(spec) + 2, market.price, seed=3)
    old = IncrementalFeatures.seed(frame.iloc[:-1], spec)
    young = IncrementalFeatures(spec)  # warming up: stepped alone, by update()
    feed(young, frame.iloc[:30])
    young_twin = copy.deepcopy(young)
    errors = step_together([(old, _bar(frame, len(frame) - 2)), (young, _bar(frame, 30))])
    assert errors[0] is not None
    assert "is not after the last one" in str(errors[0])
    assert errors[1] is None
    assert not steady(young.indicators)
    feed(young_twin, frame.iloc[30:31])
    _same_fields(young.indicators, young_twin.indicators)
    np.testing.assert_array_equal(young.raw_features(), young_twin.raw_features())
