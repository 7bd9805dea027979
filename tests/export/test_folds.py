"""Walk-forward folds purged by the labels themselves, nights and weekends counted as they fall."""

from __future__ import annotations

import numpy as np
import pandas as pd

from export.train import TrainConfig, collect_samples, prepare_symbol, walk_forward_folds
from orchestrator.demo.generator import generate_bars
from orchestrator.features.horizons import HORIZONS, Horizon
from orchestrator.marketdata.timeframes import Timeframe


def test_no_training_label_reads_a_bar_of_its_test_block() -> None:
    bars = generate_bars("EURUSD", days=45, seed=3)  # 24/5: weekends inside the labels
    cfg = TrainConfig(show_progress=False)
    data = [prepare_symbol("EURUSD", bars, cfg)]
    samples = collect_samples(data)
    span = max(h.bars(Timeframe.M5) for h in HORIZONS)
    times = pd.DatetimeIndex(bars.index).asi8
    np.testing.assert_array_equal(samples.label_ts, times[samples.end + span])
    # A label of 1,440 bars that spans a weekend covers more than the 5 days a fixed purge used.
    assert (samples.label_ts - samples.ts).max() > 6 * 86_400 * 10**9
    for train, test in walk_forward_folds(samples, cfg):
        assert train.label_ts.max() < test.ts.min()


def test_daily_bars_get_distinct_horizons() -> None:
    counts = [h.bars(Timeframe.D1) for h in HORIZONS]
    assert counts == [1, 2, 5, 20]
    assert len(set(counts)) == len(counts)
    assert Horizon.SWING.describe(Timeframe.D1, 5) == "5 trading bars (1d)"
    assert [h.bars(Timeframe.M5) for h in HORIZONS] == [6, 48, 288, 1440]
