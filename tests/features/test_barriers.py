"""The barrier path model's arithmetic (features/barriers.py) against simulation and its own
guarantees: three outcomes that sum to 1, monotone in both levels for any drift and volatility,
and first-passage odds that match the labels of a driftless random walk."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.features.barriers import (
    SL_GRID_ATR,
    TP_GRID_ATR,
    BarrierHead,
    barrier_odds,
)
from orchestrator.features.targets import STOP, TAKE_PROFIT, barrier_outcomes


def _random_inputs(n: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    return (
        rng.uniform(0.1, 5, n),
        rng.uniform(0.1, 5, n),
        rng.normal(0, 1, n),
        rng.lognormal(0, 1, n),
    )


def test_outcomes_sum_to_one_and_move_the_right_way_with_each_level() -> None:
    tp, sl, drift, scale = _random_inputs(50_000, 1)
    odds = barrier_odds(tp, sl, drift, scale, 48, exit_times=False)
    wider_tp = barrier_odds(tp * 1.05, sl, drift, scale, 48, exit_times=False)
    wider_sl = barrier_odds(tp, sl * 1.05, drift, scale, 48, exit_times=False)
    total = odds.p_tp + odds.p_sl + odds.p_neither
    assert np.abs(total - 1).max() < 1e-12
    assert min(odds.p_tp.min(), odds.p_sl.min(), odds.p_neither.min()) >= 0
    assert (wider_tp.p_tp - odds.p_tp).max() < 1e-8  # a farther take-profit is reached less
    assert (wider_sl.p_tp - odds.p_tp).min() > -1e-8  # a farther stop leaves it more time
    assert (wider_tp.p_sl - odds.p_sl).min() > -1e-8
    assert (wider_sl.p_sl - odds.p_sl).max() < 1e-8
    assert (wider_tp.p_neither - odds.p_neither).min() > -1e-8
    assert (wider_sl.p_neither - odds.p_neither).min() > -1e-8


@pytest.mark.parametrize(
    ("tp", "sl", "drift", "scale"),
    [(1.5, 1.0, 0.0, 1.0), (1.5, 1.0, 0.5, 1.0), (1.0, 2.0, -0.7, 0.8), (3.0, 0.5, 0.3, 2.5)],
)
def test_closed_form_matches_simulated_paths(
    tp: float, sl: float, drift: float, scale: float
) -> None:
    rng = np.random.default_rng(7)
    paths, steps = 20_000, 400
    x = np.zeros(paths)
    state = np.zeros(paths, np.int8)
    exit_step = np.full(paths, steps)
    for step in range(1, steps + 1):
        x += drift / steps + scale / np.sqrt(steps) * rng.standard_normal(paths)
        open_ = state == 0
        up, down = open_ & (x >= tp), open_ & (x <= -sl)
        state[up], state[down] = 1, 2
        exit_step[up | down] = step
    odds = barrier_odds(tp, sl, drift, scale, 100, checks=steps)
    assert abs(float(odds.p_tp) - (state == 1).mean()) < 0.012
    assert abs(float(odds.p_sl) - (state == 2).mean()) < 0.012
    assert abs(float(odds.expected_bars) - exit_step.mean() / steps * 100) < 1.5


def test_the_fallback_has_no_edge_before_costs() -> None:
    """Driftless: by optional stopping the expected R of any barrier pair is exactly 0."""
    tp, sl, _, scale = _random_inputs(200, 2)
    odds = barrier_odds(tp, sl, 0.0, scale, 48)
    assert np.abs(odds.expected_r).max() < 1e-6


def _random_walk_bars(bars: int, steps_per_bar: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ticks = 1000 + np.cumsum(rng.standard_normal(bars * steps_per_bar + 1))
    inside = ticks[1:].reshape(bars, steps_per_bar)
    opens = ticks[:-1:steps_per_bar]
    return pd.DataFrame(
        {
            "open": opens,
            "high": np.maximum(inside.max(axis=1), opens),
            "low": np.minimum(inside.min(axis=1), opens),
            "close": inside[:, -1],
        }
    )


def test_a_driftless_random_walk_labels_as_the_first_passage_odds_say() -> None:
    """Labels from bars (a bar reaching both levels counts as the stop) against the closed form
    with the random walk's own volatility, within 2 points in every cell."""
    steps_per_bar, horizon = 8, 12
    frame = _random_walk_bars(60_000, steps_per_bar, seed=3)
    atr = np.full(len(frame), 2 * np.sqrt(steps_per_bar))  # 2 bar standard deviations
    codes = barrier_outcomes(frame, atr, [horizon], TP_GRID_ATR, SL_GRID_ATR)[:, 0, 0]
    known = codes[:, 0, 0] >= 0
    scale = np.sqrt(horizon * steps_per_bar) / atr[0]
    tp = np.asarray(TP_GRID_ATR)[:, None]
    sl = np.asarray(SL_GRID_ATR)[None, :]
    odds = barrier_odds(tp, sl, 0.0, scale, horizon, checks=horizon * steps_per_bar)
    observed_tp = (codes[known] == TAKE_PROFIT).mean(axis=0)
    observed_sl = (codes[known] == STOP).mean(axis=0)
    assert np.abs(odds.p_tp - observed_tp).max() < 0.02
    assert np.abs(odds.p_sl - observed_sl).max() < 0.02


def test_a_custom_barrier_is_answered_by_its_nearest_cell() -> None:
    served = [[["fallback"] * 4 for _ in range(5)]]
    served[0][1][1] = "model"  # tp 1.0, sl 1.0
    head = BarrierHead(
        1, list(TP_GRID_ATR), list(SL_GRID_ATR), [[0, 0, 0]], [0.0], [served, served]
    )
    assert head.source("long", 0, 1.1, 0.9) == "model"
    assert head.source("short", 0, 2.6, 0.9) == "fallback"
    head.check(1)
