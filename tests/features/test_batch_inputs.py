"""Many states' inputs at once (features/batch_inputs.py) against each state's own inputs().

A sweep builds its Triton requests from batch_inputs; every row must be the state's inputs()
to the last bit, states whose window is not ready yet must be refused as inputs() refuses them,
and the season cell must read the bar's UTC time whatever timezone the state was seeded in.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.features.batch_inputs import batch_inputs
from orchestrator.features.incremental import IncrementalFeatures
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
