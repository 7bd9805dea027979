"""Many states at once against each alone: their inputs (features/batch_inputs.py) and their
step over one new bar (incremental.update_many), to the last bit.

A sweep builds its Triton requests from batch_inputs; every row must be the state's inputs()
to the last bit, states whose window is not ready yet must be refused as inputs() refuses them,
and the season cell must read the bar's UTC time whatever timezone the state was seeded in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.features.batch_inputs import batch_inputs
from orchestrator.features.incremental import IncrementalFeatures, update_many
from orchestrator.features.online import NotEnoughHistoryError, required_bars, seed_bars
from tests.features.test_incremental import Market, feed, market, random_bars

__all__ = ["market"]  # the fixture, shared with test_incremental


def test_each_row_is_the_states_own_inputs(market: Market) -> None:
    spec = market.spec
    need = required_bars(spec)
    states = []
    for i in range(6):
        frame = random_bars(seed_bars(spec) + 30 * i + 7, market.price, seed=40 + i)
        state = IncrementalFeatures.seed(frame.iloc[: -7 - i], spec)
        feed(state, frame.iloc[-7 - i :])  # slots at different places in the ring
        states.append(state)
    young = IncrementalFeatures(spec)  # too few bars: refused, as inputs() refuses it
    feed(young, random_bars(need - 5, market.price, seed=3))
    states.insert(2, young)
    new_york = random_bars(seed_bars(spec) + 3, market.price, seed=9)
    new_york.index = pd.DatetimeIndex(new_york.index).tz_convert("America/New_York")
    states.append(IncrementalFeatures.seed(new_york, spec))

    batch = batch_inputs(states)

    assert batch.accepted == [0, 1, 3, 4, 5, 6, 7]
    assert list(batch.refused) == [2]
    assert (batch.refused[2].have, batch.refused[2].need) == (need - 5, need)
    with pytest.raises(NotEnoughHistoryError):
        young.inputs()
    for row, position in enumerate(batch.accepted):
        want = states[position].inputs()
        for name in ("seq", "tab", "ctx", "har", "season"):
            np.testing.assert_array_equal(
                getattr(batch, name)[row : row + 1], getattr(want, name), err_msg=name
            )
        got = batch.rows[row]
        assert (got.atr, got.close, got.bar_time) == (want.atr, want.close, want.bar_time)
        np.testing.assert_array_equal(got.har, want.har)
        np.testing.assert_array_equal(got.season, want.season)
        assert got.seq.size == 0  # a kept prediction does not hold the network tensors


def test_an_empty_or_wholly_refused_batch(market: Market) -> None:
    assert batch_inputs([]).accepted == []
    young = IncrementalFeatures(market.spec)
    feed(young, random_bars(20, market.price, seed=1))
    batch = batch_inputs([young])
    assert batch.accepted == []
    assert list(batch.refused) == [0]
    assert batch.seq.shape[0] == 0
    assert batch.rows == []


def test_update_many_steps_each_state_as_update_would(market: Market) -> None:
    """The sweep's step: every state's newest bar at once, rows normalised together."""
    spec = market.spec
    frames = [random_bars(seed_bars(spec) + 3, market.price, seed=60 + i) for i in range(4)]
    together = [IncrementalFeatures.seed(frame.iloc[:-1], spec) for frame in frames]
    alone = [IncrementalFeatures.seed(frame.iloc[:-1], spec) for frame in frames]
    steps = []
    for state, frame in zip(together, frames, strict=True):
        ts = frame.index[-1]
        steps.append((state, (ts, *frame.iloc[-1].to_numpy(np.float64).tolist())))
    stale = steps[2][1]
    steps[2] = (together[2], (frames[2].index[-2], *stale[1:]))  # not after its last bar
    before = together[2].inputs()

    errors = update_many(steps)

    assert [error is None for error in errors] == [True, True, False, True]
    assert "is not after the last one" in str(errors[2])
    for i in (0, 1, 3):
        feed(alone[i], frames[i].iloc[-1:])
        want, got = alone[i].inputs(), together[i].inputs()
        for name in ("seq", "tab", "ctx", "har", "season"):
            np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
        np.testing.assert_array_equal(together[i].raw_features(), alone[i].raw_features())
    np.testing.assert_array_equal(together[2].inputs().seq, before.seq)  # left as it was
    assert update_many([]) == []
