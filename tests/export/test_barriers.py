"""The barrier model's fit and gate (export/barriers.py) on paths with known answers: a drift
planted in what the bar close serves is found and served; without one, the fallback is."""

from __future__ import annotations

import numpy as np

from export.barriers import BarrierRows, card_cells, fit_barrier_head, fit_path
from orchestrator.features.barriers import (
    FALLBACK,
    MODEL,
    SL_GRID_ATR,
    TP_GRID_ATR,
    barrier_odds,
)


def _outcomes(drift: np.ndarray, scale: np.ndarray, steps: int, seed: int) -> np.ndarray:
    """(n, sides, tp, sl) outcome codes of simulated paths (1 tp, 2 stop, 0 neither)."""
    rng = np.random.default_rng(seed)
    n = drift.size
    levels = sorted(set(TP_GRID_ATR) | set(SL_GRID_ATR))
    up = np.full((n, len(levels)), steps + 1)
    down = up.copy()
    x = np.zeros(n)
    for step in range(1, steps + 1):
        x += drift / steps + scale / np.sqrt(steps) * rng.standard_normal(n)
        for q, level in enumerate(levels):
            up[:, q] = np.where((up[:, q] > steps) & (x >= level), step, up[:, q])
            down[:, q] = np.where((down[:, q] > steps) & (x <= -level), step, down[:, q])
    tp = [levels.index(v) for v in TP_GRID_ATR]
    sl = [levels.index(v) for v in SL_GRID_ATR]
    out = np.zeros((n, 2, len(tp), len(sl)), np.int8)
    for side, (take, stop) in enumerate(
        (
            (up[:, tp][:, :, None], down[:, sl][:, None, :]),
            (down[:, tp][:, :, None], up[:, sl][:, None, :]),
        )
    ):
        out[:, side] = np.where(
            (stop <= steps) & (stop <= take), 2, np.where((take <= steps) & (take < stop), 1, 0)
        )
    return out


def _study(planted: float, seed: int, steps: int = 1000) -> dict:
    rng = np.random.default_rng(seed)
    n = 6000
    signal = rng.normal(0, 1, n)
    served_range = rng.uniform(1, 3, n)
    scale = np.sqrt(np.pi / 2) * served_range
    outcomes = _outcomes(planted * signal * scale, scale, steps, seed)[:, :, None]
    fold = np.repeat(np.arange(5), n // 5)
    ts = np.arange(n, dtype=np.int64) * 300 * 10**9
    rows = BarrierRows(
        fold=fold,
        ts=ts,
        ranges=np.stack([served_range, served_range], axis=1),
        p_long=0.5 + 0.05 * signal,  # P(long wins) - P(short wins) carries the drift
        p_short=0.5 - 0.05 * signal,
        outcomes=outcomes,
        label_bars=[1],
        bars=np.full((n, 1), 48.0),
    )
    head, card = fit_barrier_head(rows, ["intraday"])
    return {"head": head, "cells": card_cells(card), "scale": scale}


def test_a_planted_drift_is_found_and_beats_the_fallback() -> None:
    study = _study(planted=0.5, seed=1)
    cells = study["cells"]
    served = [c for c in cells if c["served"] == MODEL]
    assert len(served) >= 0.8 * len(cells)
    assert all(c["model_brier"] < c["fallback_brier"] for c in served)
    assert all(c["served_skill"] >= 0 for c in cells)
    assert study["head"].drift_coef[0][2] > 3  # drift in units of s per unit of P(long) - P(short)


def test_without_a_drift_the_served_odds_are_the_first_passage_odds() -> None:
    """A driftless walk: the fitted drift is about 0, and whatever each cell serves (the model
    where it beat the fallback, else the fallback) is within 2 points of the exact odds."""
    study = _study(planted=0.0, seed=2, steps=2000)
    head, scale = study["head"], study["scale"]
    # Drift per sd of the signal, in units of s (P(long) - P(short) is 0.1 x the signal): a
    # third of the planted test's 0.5 at most, from 500 rows of noise.
    assert abs(head.drift_coef[0][2] * 0.1) < 0.17
    assert abs(head.drift_coef[0][0]) < 0.1
    tp = np.asarray(TP_GRID_ATR)[:, None]
    sl = np.asarray(SL_GRID_ATR)[None, :]
    for row in (0, 1, 2):
        s = scale[row]
        exact = barrier_odds(tp, sl, 0.0, s, 48, checks=2000, exit_times=False)
        served = {
            FALLBACK: barrier_odds(tp, sl, 0.0, s, 48, exit_times=False),
            MODEL: barrier_odds(
                tp,
                sl,
                0.0,
                s * np.exp(head.log_scale[0]),
                48,
                exit_times=False,
                shape=head.shape(0),
            ),
        }
        for i in range(len(TP_GRID_ATR)):
            for j in range(len(SL_GRID_ATR)):
                odds = served[head.served[0][0][i][j]]
                assert abs(odds.p_tp[i, j] - exact.p_tp[i, j]) < 0.02
                assert abs(odds.p_sl[i, j] - exact.p_sl[i, j]) < 0.02


def test_a_constant_drift_input_gets_no_slope() -> None:
    """P(long) and P(short) served as base rates: their difference is one number, which the
    intercept already is."""
    rng = np.random.default_rng(4)
    n = 600
    served_range = rng.uniform(1, 3, n)
    scale = np.sqrt(np.pi / 2) * served_range
    outcomes = _outcomes(0.3 * scale, scale, 300, seed=4)
    inputs = np.stack([np.ones(n), rng.normal(0, 0.1, n), np.full(n, 0.04)], axis=1)
    fit = fit_path(scale, inputs, outcomes, np.full(n, 48.0))
    assert fit.coef[2] == 0.0
    assert fit.coef[0] > 0.1  # the planted drift lands in the intercept
