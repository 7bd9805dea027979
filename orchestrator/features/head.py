"""The serving head: what turns the networks' raw outputs into the served numbers.

Fitted by training on out-of-fold predictions (export/head.py) and shipped inside the feature
spec, so every path that answers (the API, the WebSocket, other replicas, backtests) applies the
same arithmetic to the same inputs:

- **ranges**: per output column (up/down per horizon) a blend of the GRU, the Transformer, the
  HAR baseline and the seasonal baseline, with weights chosen on the walk-forward folds (training
  fits a convex blend; the head also carries an intercept), so a horizon where the networks know
  nothing is served by the baseline instead;
- **intervals**: split-conformal multipliers of the served range (the 10th and 90th percentiles of
  realised / predicted on the folds) give an 80 % interval for the high and for the low;
- **probabilities**: isotonic maps for P(long wins), P(short wins) and the confidence, fitted on
  out-of-fold predictions. The confidence maps either the metamodel's score or the chosen side's
  raw P(win) (the larger of the two classifiers'), whichever scored better out of sample
  (`confidence_source`); on the real 1h data the metamodel's scores shifted from one refit to the
  next and its calibrated confidence ranked no better than chance.

A spec without a head (models exported before it existed) serves the mean of the two networks,
no intervals and the raw probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from orchestrator.features.baseline import BASELINE_VERSION, SEASON_CELLS

F64 = npt.NDArray[np.float64]
Floats = npt.NDArray[np.floating[Any]]
STACK_INPUTS: tuple[str, ...] = ("intercept", "gru", "transformer", "har", "seasonal")
METAMODEL = "metamodel"
CHOSEN_SIDE = "chosen_side"
CONFIDENCE_SOURCES = (METAMODEL, CHOSEN_SIDE)


class Calibration(msgspec.Struct, frozen=True):
    """A monotone map given by its knots (isotonic regression's thresholds)."""

    x: list[float]
    y: list[float]

    def __call__(self, p: F64) -> F64:
        return np.interp(p, self.x, self.y) if self.x else p


class ServingHead(msgspec.Struct, frozen=True):
    baseline_version: int
    har_coef: list[list[float]]  # (2H, 5): intercept, then one per HAR input
    seasonal: list[list[float]]  # (168, 2H): mean target per (day of week, hour) cell
    stack: list[list[float]]  # (2H, 5): weights of STACK_INPUTS
    interval_level: float
    interval_ratio: list[list[float]]  # (2H, 2): lower and upper multiplier of the served range
    p_long: Calibration
    p_short: Calibration
    confidence: Calibration
    confidence_source: str = METAMODEL  # what `confidence` maps: METAMODEL or CHOSEN_SIDE

    def check(self, n_ranges: int) -> None:
        """Refuses a head built for other baseline inputs or another number of outputs."""
        if self.baseline_version != BASELINE_VERSION:
            raise ValueError(
                f"serving head built on baseline inputs v{self.baseline_version}, this server "
                f"computes v{BASELINE_VERSION}; retrain with `make models`"
            )
        shapes = {
            "har_coef": (np.shape(self.har_coef), (n_ranges, 5)),
            "seasonal": (np.shape(self.seasonal), (SEASON_CELLS, n_ranges)),
            "stack": (np.shape(self.stack), (n_ranges, len(STACK_INPUTS))),
            "interval_ratio": (np.shape(self.interval_ratio), (n_ranges, 2)),
        }
        if self.confidence_source not in CONFIDENCE_SOURCES:
            raise ValueError(
                f"serving head's confidence_source {self.confidence_source!r} is none of "
                f"{CONFIDENCE_SOURCES}; retrain with `make models`"
            )
        wrong = {k: v for k, v in shapes.items() if v[0] != v[1]}
        if wrong:
            raise ValueError(f"serving head has wrong shapes (got, expected): {wrong}")


@dataclass(frozen=True)
class ServedOutput:
    """What is served for a batch of N bars; ranges in ATR units, [up, down] per horizon."""

    ranges: F64  # (N, 2H)
    intervals: F64 | None  # (N, 2H, 2): [lower, upper] per column; None without a head
    baseline: F64 | None  # (N, 2H): the HAR baseline's ranges (live skill); None without a head
    p_long: F64  # (N,)
    p_short: F64
    confidence: F64

    def row(self, index: int) -> ServedOutput:
        """Row `index` as a batch of one (the shape a single bar's prediction carries)."""
        one = slice(index, index + 1)
        return ServedOutput(
            self.ranges[one],
            None if self.intervals is None else self.intervals[one],
            None if self.baseline is None else self.baseline[one],
            self.p_long[one],
            self.p_short[one],
            self.confidence[one],
        )


def har_ranges(coef: npt.ArrayLike, har: F64) -> F64:
    """(N, 2H) HAR baseline: intercept + coefficients x the four HAR inputs, per column."""
    table = np.asarray(coef, np.float64)
    x = np.nan_to_num(har, nan=0.0)  # HAR inputs unknown: the windows' ranges equal the ATR
    out: F64 = table[:, 0] + x @ table[:, 1:].T
    return out


def seasonal_ranges(table: npt.ArrayLike, season: npt.NDArray[np.int64]) -> F64:
    """(N, 2H) seasonal baseline: the (day of week, hour) cell's mean target."""
    out: F64 = np.asarray(table, np.float64)[np.clip(season, 0, SEASON_CELLS - 1)]
    return out


def stack_ranges(weights: npt.ArrayLike, inputs: list[F64]) -> F64:
    """(N, 2H) served range: per column, weights . [1, gru, transformer, har, seasonal], >= 0
    (a range below zero cannot happen; the stack's intercept can reach it)."""
    w = np.asarray(weights, np.float64)
    total = np.broadcast_to(w[:, 0], inputs[0].shape).copy()
    for k, values in enumerate(inputs, start=1):
        total += w[:, k] * values
    out: F64 = np.maximum(total, 0.0)
    return out


def apply_head(
    head: ServingHead | None,
    gru: Floats,
    transformer: Floats,
    har: F64,
    season: npt.NDArray[np.int64],
    p_long: Floats,
    p_short: Floats,
    confidence: Floats,
) -> ServedOutput:
    """The served numbers for N bars (see the module docstring)."""
    gru64, transformer64 = np.asarray(gru, np.float64), np.asarray(transformer, np.float64)
    if head is None:
        return ServedOutput(
            (gru64 + transformer64) / 2,
            None,
            None,
            *(np.asarray(p, np.float64) for p in (p_long, p_short, confidence)),
        )
    har_pred = har_ranges(head.har_coef, har)
    seasonal = seasonal_ranges(head.seasonal, season)
    ranges = stack_ranges(head.stack, [gru64, transformer64, har_pred, seasonal])
    ratio = np.asarray(head.interval_ratio)
    intervals = ranges[:, :, np.newaxis] * ratio[np.newaxis]
    raw_long, raw_short = np.asarray(p_long, np.float64), np.asarray(p_short, np.float64)
    raw_confidence = (
        chosen_side_p(raw_long, raw_short)
        if head.confidence_source == CHOSEN_SIDE
        else np.asarray(confidence, np.float64)
    )
    return ServedOutput(
        ranges,
        intervals,
        har_pred,
        head.p_long(raw_long),
        head.p_short(raw_short),
        head.confidence(raw_confidence),
    )


def chosen_side_p(p_long: F64, p_short: F64) -> F64:
    """The raw P(win) of the side the signal takes (long when P(long) >= P(short), as the
    ensemble's direction output)."""
    out: F64 = np.maximum(p_long, p_short)
    return out
