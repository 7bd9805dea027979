"""Adaptive conformal intervals: the level moves with every outcome and brings coverage back
after a volatility regime shift, from the same totals every replica shares."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.features.head import INTERVAL_GRID
from orchestrator.quality.adaptive import (
    ADAPTIVE_RATE,
    MISCOVERAGE_BOUNDS,
    PROBABILITY_MEMORY_OUTCOMES,
    PROBABILITY_SHIFT_BOUND,
    aci_miscoverage,
    column_miscoverage,
    probability_rate,
    probability_shift,
    probability_shifts,
    universe_rate,
)

RECOVERY_OUTCOMES = 400  # stated: coverage back within 3 points of 80 % within this many outcomes


def test_the_level_is_the_target_while_the_miss_rate_is_the_target() -> None:
    assert aci_miscoverage(0.2, ADAPTIVE_RATE, 1000, 800) == pytest.approx(0.2)
    assert aci_miscoverage(0.2, ADAPTIVE_RATE, 100, 60) < 0.2  # missing too often: wider
    assert aci_miscoverage(0.2, ADAPTIVE_RATE, 100, 100) > 0.2  # never missing: narrower
    assert aci_miscoverage(0.2, ADAPTIVE_RATE, 10**6, 0) == MISCOVERAGE_BOUNDS[0]


def test_columns_read_the_shared_live_quality_totals() -> None:
    sums = {"scalping:intervals": 100.0, "scalping:inside_high": 80.0, "scalping:inside_low": 60.0}
    alpha = column_miscoverage(0.2, ADAPTIVE_RATE, ["scalping", "intraday"], sums)
    np.testing.assert_allclose(alpha, [0.2, 0.2 - ADAPTIVE_RATE * 20, 0.2, 0.2])


def test_coverage_comes_back_after_a_volatility_regime_shift() -> None:
    """Realised / served ratios are lognormal; the conformal table was fitted before the shift.
    From outcome 0 on, every realised range is 1.6 times larger than before: the fixed 80 %
    interval covers far less, the adaptive one is back within 3 points of 80 % over the
    RECOVERY_OUTCOMES that follow the first RECOVERY_OUTCOMES."""
    rng = np.random.default_rng(11)
    before = rng.lognormal(0.0, 0.35, 20_000)
    table = np.quantile(before, INTERVAL_GRID)
    grid = np.asarray(INTERVAL_GRID)
    after = 1.6 * rng.lognormal(0.0, 0.35, 3 * RECOVERY_OUTCOMES)
    resolved = inside = 0
    fixed_hits, adaptive_hits = [], []
    for ratio in after:
        alpha = aci_miscoverage(0.2, ADAPTIVE_RATE, resolved, inside)
        low, high = np.interp([alpha / 2, 1 - alpha / 2], grid, table)
        hit = bool(low <= ratio <= high)
        adaptive_hits.append(hit)
        fixed_hits.append(bool(np.interp(0.1, grid, table) <= ratio <= np.interp(0.9, grid, table)))
        resolved, inside = resolved + 1, inside + int(hit)
    assert np.mean(fixed_hits) < 0.6
    recovered = np.mean(adaptive_hits[RECOVERY_OUTCOMES : 2 * RECOVERY_OUTCOMES])
    assert abs(recovered - 0.8) <= 0.03, recovered
    assert abs(np.mean(adaptive_hits[2 * RECOVERY_OUTCOMES :]) - 0.8) <= 0.03


def test_a_probability_moves_towards_the_win_rate_its_outcomes_show() -> None:
    rate = probability_rate(label_bars=10, symbols=2)
    assert rate == pytest.approx(1 / (PROBABILITY_MEMORY_OUTCOMES * 20))
    assert probability_shift(rate, wins=40, served=40.0) == 0.0  # calibrated: stays put
    assert probability_shift(rate, wins=30, served=40.0) == pytest.approx(-10 * rate)
    assert probability_shift(rate, wins=10**6, served=0.0) == PROBABILITY_SHIFT_BOUND
    sums = {"long:wins": 12.0, "long:p": 10.0, "short:wins": 3.0, "short:p": 5.0}
    np.testing.assert_allclose(probability_shifts(0.01, sums), [0.02, -0.02, 0.0])


def test_a_step_is_per_bar_of_the_universe_it_was_replayed_on() -> None:
    """Replayed on 2 symbols, served on 10,000: each outcome moves the level 5,000 times less,
    so one bar moves it as far as one bar of the training set did."""
    assert universe_rate(0.005, 2, 10_000) == pytest.approx(0.005 * 2 / 10_000)
    assert universe_rate(0.005, 2, 2) == 0.005
    assert universe_rate(0.005, 0, 10_000) == 0.005  # a head exported before the scaling
