"""The simple models every network is judged against, and the serving head fitted from them.

Baselines (fitted on a fold's training rows, scored on its test rows, like the networks):
- range targets: the training mean, the seasonal profile (day of week x hour, shrunk towards the
  mean where a cell has few rows), HAR on the log-range inputs, log-HAR with a leverage term (a
  linear model of log(range + offset), back-transformed with Duan's smearing factor) and HAR on
  the Garman-Klass volatility levels — the raised baselines of the volatility literature
  (Corsi 2009; Clements & Preve 2021);
- TP/SL outcomes: the base rate and a logistic model on the HAR inputs.

The serving head (orchestrator/features/head.py) is fitted here too: the stack weights by least
squares on out-of-fold predictions, the interval multipliers by split conformal, the probability
maps by isotonic regression.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import nnls  # type: ignore[import-untyped]
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from orchestrator.features.baseline import GK_COLUMNS, HAR_COLUMNS, SEASON_CELLS
from orchestrator.features.head import (
    INTERVAL_GRID,
    LOG_HAR_OFFSET_ATR,
    Calibration,
    gk_ranges,
    har_ranges,
    log_har_inputs,
    log_har_ranges,
    seasonal_ranges,
)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

SEASON_SHRINK_ROWS = 30.0  # a cell with this many rows is half its own mean, half the global
RIDGE = 1e-3  # keeps collinear inputs (1 bar == 1 hour at 1h bars) solvable
INTERVAL_LEVEL = 0.8
PREDICTION_FLOOR_ATR = 0.05  # conformal ratios divide by the prediction; never by ~0
CALIBRATION_BIN_ROWS = 100  # rows per isotonic input point (the reliability target's decile size)
ZERO_FLOOR_SHARE = 0.025  # a quarter of the lower tail: see fit_interval_ratios
STACK_SUM_WEIGHT = 100.0  # how hard the stack's weights are held to sum to one
# Independent outcomes (rows / label bars) at which the baselines' fitted weights and equal weights
# count alike; see fit_baseline_stack.
BLEND_PRIOR_OUTCOMES = 200.0


def _ridge(x: F64, y: F64) -> F64:
    """Least squares with an unpenalised intercept column first; (outputs, 1 + inputs)."""
    design = np.column_stack([np.ones(len(x)), x])
    penalty = RIDGE * len(x) * np.eye(design.shape[1])
    penalty[0, 0] = 0.0
    coef = np.linalg.solve(design.T @ design + penalty, design.T @ y)
    return np.asarray(coef.T, np.float64)


def fit_har(baseline: F64, y: F64) -> F64:
    """(2H, 5) HAR coefficients on the log-range inputs (NaN inputs count as 0, as served)."""
    return _ridge(np.nan_to_num(baseline[:, HAR_COLUMNS], nan=0.0), y)


def fit_gk(baseline: F64, y: F64) -> F64:
    """(2H, 5) HAR coefficients on the Garman-Klass volatility levels."""
    return _ridge(np.nan_to_num(baseline[:, GK_COLUMNS], nan=0.0), y)


def fit_log_har(baseline: F64, y: F64) -> tuple[F64, F64]:
    """(2H, 7) log-HAR coefficients with the leverage inputs, and (2H,) smearing factors."""
    x = np.nan_to_num(log_har_inputs(baseline), nan=0.0)
    # A move past the close can be negative (the next bars gap away from it): log-HAR models
    # the part at or above 0, as it serves.
    target = np.log(np.maximum(y, 0.0) + LOG_HAR_OFFSET_ATR)
    coef = _ridge(x, target)
    residual = target - (coef[:, 0] + x @ coef[:, 1:].T)
    return coef, np.asarray(np.exp(residual).mean(axis=0), np.float64)


@dataclass(frozen=True)
class BaselineFit:
    """Every range baseline fitted on one set of rows."""

    train_mean: F64  # (2H,)
    seasonal: F64  # (168, 2H)
    har: F64
    log_har: F64
    log_har_smear: F64
    har_gk: F64

    @classmethod
    def fit(cls, baseline: F64, season: I64, y: F64) -> BaselineFit:
        log_har, smear = fit_log_har(baseline, y)
        return cls(
            train_mean=np.asarray(y.mean(axis=0), np.float64),
            seasonal=fit_seasonal(season, y),
            har=fit_har(baseline, y),
            log_har=log_har,
            log_har_smear=smear,
            har_gk=fit_gk(baseline, y),
        )

    def predict(self, baseline: F64, season: I64) -> dict[str, F64]:
        """(N, 2H) per baseline, RANGE_BASELINES names (the functions serving applies)."""
        n = len(baseline)
        return {
            "train_mean": np.broadcast_to(self.train_mean, (n, self.train_mean.size)).copy(),
            "seasonal": seasonal_ranges(self.seasonal, season),
            "har": har_ranges(self.har, baseline),
            "log_har": log_har_ranges(self.log_har, self.log_har_smear, baseline),
            "har_gk": gk_ranges(self.har_gk, baseline),
        }


def fit_seasonal(season: I64, y: F64) -> F64:
    """(168, 2H) mean target per cell, shrunk towards the overall mean by its row count."""
    overall = y.mean(axis=0)
    counts = np.bincount(season, minlength=SEASON_CELLS).astype(np.float64)
    sums = np.stack(
        [np.bincount(season, weights=y[:, j], minlength=SEASON_CELLS) for j in range(y.shape[1])],
        axis=1,
    )
    out = (sums + SEASON_SHRINK_ROWS * overall) / (counts + SEASON_SHRINK_ROWS)[:, None]
    return np.asarray(out, np.float64)


def fit_stack(inputs: list[F64], y: F64) -> F64:
    """(2H, 1 + models) weights per output column: a convex blend (non-negative weights that sum
    to 1, no intercept) chosen by least squares on out-of-fold rows. Convex keeps the served range
    on the scale of its inputs when the market's level moves (a fitted intercept stays at the
    old level), and the two near-collinear networks cannot trade +100 of one for -100 of the
    other. Measured on the real 1h data: a free intercept lost 44 % MSE to HAR at 5 days."""
    columns = []
    for j in range(y.shape[1]):
        x = np.column_stack([values[:, j] for values in inputs])
        scale = float(np.sqrt((y[:, j] ** 2).sum())) or 1.0
        # The sum-to-one constraint as one heavily weighted extra row of the NNLS system.
        penalty = STACK_SUM_WEIGHT * scale
        design = np.vstack([x, np.full((1, x.shape[1]), penalty)])
        target = np.concatenate([y[:, j], [penalty]])
        weights, _ = nnls(design, target)
        columns.append(np.concatenate([[0.0], weights / max(weights.sum(), 1e-12)]))
    return np.stack(columns)


def _shrunk(fitted: F64, rows: int, label_bars: Sequence[int], models: int) -> F64:
    """`fitted` (2H, 1 + models) pulled towards equal weights on the last `models` inputs (the
    baselines) by how many independent outcomes fitted it: rows / label bars per column."""
    outcomes = rows / np.asarray(label_bars, np.float64)
    trust = (outcomes / (outcomes + BLEND_PRIOR_OUTCOMES))[:, None]
    prior = np.zeros_like(fitted)
    prior[:, -models:] = 1.0 / models
    out: F64 = trust * fitted + (1.0 - trust) * prior
    return out


def fit_blend(inputs: list[F64], y: F64, label_bars: Sequence[int]) -> F64:
    """(2H, 1 + models) weights of the networks' blend: fit_stack over every input, shrunk
    towards the baselines' equal blend as fit_baseline_stack is, so a network earns its weight
    with outcomes rather than with the least-squares fit's noise."""
    return _shrunk(fit_stack(inputs, y), len(y), label_bars, len(inputs) - 2)


def fit_baseline_stack(inputs: list[F64], y: F64, label_bars: Sequence[int]) -> F64:
    """(2H, 1 + models) weights of the baselines' blend (`inputs` in STACK_INPUTS order after
    the intercept: both networks first, which get zero): fit_stack's weights over the baselines,
    shrunk towards equal weights by how many independent outcomes fitted them.

    Least-squares weights need many outcomes; a 390-bar label on a year of 5m bars has a few
    dozen, and there equal weights carry to the next fold better (the forecast-combination
    puzzle). Measured on saved folds (python -m export train --oof), served skill over the best
    baseline at swing / position: session set -0.040 / -0.016 fitted, -0.018 / +0.024 shrunk;
    demo 5m -0.042 / -0.124 fitted, -0.024 / -0.015 shrunk; real 1d unchanged (+0.002 to
    -0.002), where the short horizons have thousands of outcomes."""
    fitted = fit_stack(inputs[2:], y)
    networks = np.zeros((fitted.shape[0], 2))
    weights = np.concatenate([fitted[:, :1], networks, fitted[:, 1:]], axis=1)
    return _shrunk(weights, len(y), label_bars, len(inputs) - 2)


def fit_interval_ratios(predicted: F64, y: F64, level: float = INTERVAL_LEVEL) -> F64:
    """(2H, 2) split-conformal multipliers: [ratio_lo x pred, ratio_hi x pred] covers `level`
    of realised / predicted, with the finite-sample correction.

    Equal tails, except for a column that realises exactly 0 (no move past the close) in at
    least ZERO_FLOOR_SHARE of its rows: its interval starts at 0 and ends at the `level`
    quantile. There the lower tail is mostly that point mass, whose size drifts with how busy
    the market is; on the real 1h BTCUSD folds it fell from 8 % to 3 %, and equal tails fitted on
    earlier folds over-covered the 1-hour horizon by 4-5 points (the floored interval: 0.807 /
    0.811; every threshold from 2 % to 5 % gave the same columns)."""
    ratio = y / np.maximum(predicted, PREDICTION_FLOOR_ATR)
    n = len(ratio)
    upper_q = _corrected(1 - (1 - level) / 2, n)
    lower = np.quantile(ratio, 1.0 - upper_q, axis=0, method="lower")
    upper = np.quantile(ratio, upper_q, axis=0, method="higher")
    floored = (y == 0).mean(axis=0) >= ZERO_FLOOR_SHARE
    if floored.any():
        lower[floored] = 0.0
        upper[floored] = np.quantile(
            ratio[:, floored], _corrected(level, n), axis=0, method="higher"
        )
    out: F64 = np.stack([lower, upper], axis=1)
    return out


def fit_interval_quantiles(predicted: F64, y: F64) -> tuple[F64, list[bool]]:
    """(2H, len(INTERVAL_GRID)) quantiles of realised / predicted per column, and which columns
    start at 0 (fit_interval_ratios' rule): the table adaptive intervals read their level from."""
    ratio = y / np.maximum(predicted, PREDICTION_FLOOR_ATR)
    table = np.quantile(ratio, np.asarray(INTERVAL_GRID), axis=0).T
    floored = (y == 0).mean(axis=0) >= ZERO_FLOOR_SHARE
    return np.asarray(table, np.float64), [bool(v) for v in floored]


def _corrected(q: float, n: int) -> float:
    """Split conformal's finite-sample quantile level: ceil((n + 1) q) / n, at most 1."""
    return min(1.0, math.ceil((n + 1) * q) / n)


def fit_calibration(p: F64, outcome: F64) -> Calibration:
    """Isotonic map from raw probability to observed frequency, as knots for np.interp.

    Fitted on equal-count bins of at least CALIBRATION_BIN_ROWS rows (weighted by their rows)
    rather than on single rows, so no step rests on a handful of extreme scores: on the real 1h
    folds the row-level fit put P(short wins) 7 points too low in its 0-0.1 decile."""
    if len(np.unique(outcome)) < 2:
        return Calibration([], [])
    order = np.argsort(p, kind="stable")
    bins = np.array_split(order, max(1, len(p) // CALIBRATION_BIN_ROWS))
    x = np.array([p[b].mean() for b in bins])
    y = np.array([outcome[b].mean() for b in bins])
    rows = np.array([len(b) for b in bins], np.float64)
    iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(
        x, y, sample_weight=rows
    )
    return Calibration(
        [round(float(v), 6) for v in iso.X_thresholds_],
        [round(float(v), 6) for v in iso.y_thresholds_],
    )


def fit_har_logistic(baseline: F64, outcome: F64) -> LogisticRegression | None:
    """The classifiers' baseline beyond the base rate; None when a fold holds one class only."""
    if len(np.unique(outcome)) < 2:
        return None
    x = np.nan_to_num(baseline[:, HAR_COLUMNS], nan=0.0)
    return LogisticRegression(C=1.0, max_iter=1000).fit(x, outcome)


def har_logistic_proba(model: LogisticRegression | None, baseline: F64, base_rate: float) -> F64:
    if model is None:
        return np.full(len(baseline), base_rate)
    out: F64 = model.predict_proba(np.nan_to_num(baseline[:, HAR_COLUMNS], nan=0.0))[:, 1]
    return out
