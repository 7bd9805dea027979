"""The barrier model's fit and gate (export/barriers.py) on paths with known answers: a drift
planted in what the bar close serves is found and served; without one, the fallback is."""

from __future__ import annotations

import numpy as np

from export.barriers import fit_barrier_head
from orchestrator.features.barriers import FALLBACK, MODEL, SL_GRID_ATR, TP_GRID_ATR


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


def _study(planted: float, seed: int, steps: int = 150) -> dict:
    rng = np.random.default_rng(seed)
    n = 2500
    signal = rng.normal(0, 1, n)
    served_range = rng.uniform(1, 3, n)
    scale = np.sqrt(np.pi / 2) * served_range
    outcomes = _outcomes(planted * signal * scale, scale, steps, seed)[:, :, None]
    fold = np.repeat(np.arange(5), n // 5)
    ts = np.arange(n, dtype=np.int64) * 300 * 10**9
    head, card = fit_barrier_head(
        fold,
        ts,
        np.stack([served_range, served_range], axis=1),
        0.5 + 0.05 * signal,  # P(long wins) - P(short wins) carries the drift
        0.5 - 0.05 * signal,
        outcomes,
        [1],
        ["intraday"],
    )
    return {"head": head, "cells": card["cells"]}


def test_a_planted_drift_is_found_and_beats_the_fallback() -> None:
    study = _study(planted=0.5, seed=1)
    cells = study["cells"]
    served = [c for c in cells if c["served"] == MODEL]
    assert len(served) >= 0.8 * len(cells)
    assert all(c["model_brier"] < c["fallback_brier"] for c in served)
    assert all(c["served_skill"] >= 0 for c in cells)
    assert study["head"].drift_coef[0][2] > 3  # drift in units of s per unit of P(long) - P(short)


def test_without_a_drift_the_fallback_is_served() -> None:
    """Finely sampled paths (the fallback monitors continuously), nothing to find."""
    cells = _study(planted=0.0, seed=2, steps=2000)["cells"]
    assert sum(c["served"] == FALLBACK for c in cells) >= 0.9 * len(cells)
