"""The baselines' inputs: the O(1) serving window equals the batch definition bar by bar."""

from __future__ import annotations

import numpy as np
import pandas as pd

from orchestrator.demo.generator import generate_bars
from orchestrator.features.baseline import (
    BASELINE_INPUTS,
    GK_COLUMNS,
    HAR_COLUMNS,
    LEVERAGE_COLUMNS,
    BaselineWindow,
    baseline_features,
    har_windows,
    season_cell,
    season_cells,
)
from orchestrator.features.indicators import compute_features
from orchestrator.marketdata.timeframes import Timeframe


def test_windows_are_wall_clock_durations_in_bars() -> None:
    assert har_windows(Timeframe.M5) == [1, 12, 288, 2016]
    assert har_windows(Timeframe.H1) == [1, 1, 24, 168]
    assert har_windows(Timeframe.D1) == [1, 1, 1, 7]


def test_the_serving_window_equals_the_batch_definition_bar_by_bar() -> None:
    bars = generate_bars("BTCUSD", days=10, seed=3)  # longer than the 1-week window
    atr = compute_features(bars)["atr"].to_numpy()
    batch = baseline_features(bars, atr, Timeframe.M5)
    window = BaselineWindow(Timeframe.M5)
    compared = 0
    rows = zip(bars.open, bars.high, bars.low, bars.close, strict=True)
    for i, (open_, high, low, close) in enumerate(rows):
        window.update(open_, high, low, close)
        if np.isfinite(batch[i]).all():
            # float32 ring (10,000 symbols on one machine): measured within 1.2e-7 here.
            np.testing.assert_allclose(window.features(atr[i], close), batch[i], atol=1e-6)
            compared += 1
    assert compared > len(bars) - 100  # every bar once ATR is known
    assert np.isnan(window.features(float("nan"), 1.0)).all()


def test_a_known_range_series_gives_known_inputs() -> None:
    """Every bar opens at 100.5, closes at 99.5 (its low), ranges 1 % and the ATR is 2 % of
    the close: the log-range inputs are log(1/2), the Garman-Klass and leverage inputs follow
    from the closed forms."""
    index = pd.date_range("2024-01-01", periods=3000, freq="5min", tz="UTC")
    close = np.full(index.size, 99.5)
    bars = pd.DataFrame(
        {"open": close + 1.0, "high": close + 1.0, "low": close, "close": close}, index=index
    )
    got = baseline_features(bars, np.full(index.size, 1.99), Timeframe.M5)
    assert got.shape == (index.size, len(BASELINE_INPUTS))
    log_hl, log_co = np.log(100.5 / 99.5), np.log(99.5 / 100.5)
    gk = np.sqrt(0.5 * log_hl**2 - (2 * np.log(2) - 1) * log_co**2)
    np.testing.assert_allclose(got[:, HAR_COLUMNS], np.log((1.0 / 99.5) / 0.02), atol=1e-12)
    np.testing.assert_allclose(got[:, GK_COLUMNS], gk / 0.02, atol=1e-12)
    np.testing.assert_allclose(got[:, LEVERAGE_COLUMNS], log_co / 0.02, atol=1e-12)


def test_season_cells_count_hours_from_monday_utc() -> None:
    stamps = pd.DatetimeIndex(["2024-01-01 00:00", "2024-01-07 23:59"], tz="UTC")  # Mon, Sun
    np.testing.assert_array_equal(season_cells(stamps), [0, 167])
    assert season_cell(pd.Timestamp("2024-01-02 03:00", tz="Europe/Berlin")) == 24 + 2


def test_a_window_seeded_at_once_equals_one_fed_bar_by_bar() -> None:
    bars = generate_bars("BTCUSD", days=12, seed=5)
    columns = [bars[k].to_numpy() for k in ("open", "high", "low", "close")]
    atr = compute_features(bars)["atr"].to_numpy()
    for split in (10, 2016, 2500):  # shorter than, exactly and longer than the week's ring
        one_by_one, at_once = BaselineWindow(Timeframe.M5), BaselineWindow(Timeframe.M5)
        for row in zip(*(c[:split] for c in columns), strict=True):
            one_by_one.update(*row)
        at_once.extend(*(c[:split] for c in columns))
        for row in zip(*(c[split : split + 300] for c in columns), strict=True):
            one_by_one.update(*row)
            at_once.update(*row)
        last = split + 299
        np.testing.assert_allclose(
            at_once.features(atr[last], columns[3][last]),
            one_by_one.features(atr[last], columns[3][last]),
            rtol=0,
            atol=1e-12,
        )
