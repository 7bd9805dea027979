"""The serving head: what turns the networks' raw outputs into the served numbers.

Fitted by training on out-of-fold predictions (export/baselines.py, export/gate.py) and shipped
inside the feature spec, so every path that answers (the API, the WebSocket, other replicas,
backtests) applies the same arithmetic to the same inputs:

- **baselines**, computed from the O(1) serving window (orchestrator/features/baseline.py): HAR
  on log ranges, log-HAR with a leverage term, HAR on the Garman-Klass volatility, and the
  (day of week, hour) seasonal profile;
- **ranges**: per output column (up/down per horizon) either a convex blend of the GRU, the
  Transformer and the baselines, or, where a test fixed before training (the **gate**,
  export/gate.py) found no evidence that the networks add to the baselines out of sample, a
  convex blend of the baselines alone (BASELINES). `served` names the choice per column; the
  stack weights encode it (zero on both networks for BASELINES; one-hot on a single baseline in
  heads exported before the baselines' blend), so serving never branches;
- **intervals**: split-conformal multipliers of the served range give an 80 % interval for the
  high and for the low. The head also ships the conformal quantiles of realised / served at a
  grid of levels, so live serving can move each interval's level by adaptive conformal
  inference (Gibbs & Candès 2021) as outcomes arrive (`interval_ratios`; the miscoverage per
  column comes from live quality, orchestrator/quality/adaptive.py);
- **probabilities**: isotonic maps for P(long wins), P(short wins) and the confidence. Where the
  gate found no Brier skill over the base rate, the map is the constant base rate
  (`probability_served` says which). Live, each probability is shifted by what its resolved
  outcomes say it missed so far (`OnlineLevels.probability_shift`), so a base rate that drifts
  is followed instead of served stale.

A spec without a head (models exported before it existed) serves the mean of the two networks,
no intervals and the raw probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from orchestrator.features.barriers import BarrierHead
from orchestrator.features.baseline import (
    BASELINE_VERSION,
    GK_COLUMNS,
    HAR_COLUMNS,
    LEVERAGE_COLUMNS,
    SEASON_CELLS,
)

F64 = npt.NDArray[np.float64]
Floats = npt.NDArray[np.floating[Any]]
NETWORKS = "networks"  # what `served` says of a column served by the blend
BASELINES = "baselines"  # ... served by the convex blend of the baselines, no network
RANGE_BASELINES: tuple[str, ...] = ("train_mean", "seasonal", "har", "log_har", "har_gk")
STACK_INPUTS: tuple[str, ...] = (
    "intercept",
    "gru",
    "transformer",
    "har",
    "seasonal",
    "log_har",
    "har_gk",
)
PROBABILITIES: tuple[str, ...] = ("p_long", "p_short", "confidence")
MODEL = "model"  # what `probability_served` says of a calibrated model probability
BASE_RATE = "base_rate"
METAMODEL = "metamodel"
CHOSEN_SIDE = "chosen_side"
CONFIDENCE_SOURCES = (METAMODEL, CHOSEN_SIDE)
LOG_HAR_OFFSET_ATR = 0.05  # log-HAR models log(range + offset): a range can be exactly 0
INTERVAL_GRID: tuple[float, ...] = tuple(round(i / 200, 3) for i in range(201))  # quantile levels
PROBABILITY_FLOOR = 0.01  # a shifted probability never claims certainty either way


class Calibration(msgspec.Struct, frozen=True):
    """A monotone map given by its knots (isotonic regression's thresholds)."""

    x: list[float]
    y: list[float]

    def __call__(self, p: F64) -> F64:
        return np.interp(p, self.x, self.y) if self.x else p

    @classmethod
    def constant(cls, value: float) -> Calibration:
        """Every probability maps to `value` (the base rate, when the model shows no skill)."""
        return cls([0.0, 1.0], [round(value, 6), round(value, 6)])


class ServingHead(msgspec.Struct, frozen=True):
    baseline_version: int
    har_coef: list[list[float]]  # (2H, 5): intercept, then the 4 log-range inputs
    log_har_coef: list[list[float]]  # (2H, 7): intercept, 4 log-range inputs, 2 leverage inputs
    log_har_smear: list[float]  # (2H,): E[exp(residual)] (Duan), undoes the log's bias
    gk_coef: list[list[float]]  # (2H, 5): intercept, then the 4 Garman-Klass levels
    seasonal: list[list[float]]  # (168, 2H): mean target per (day of week, hour) cell
    train_mean: list[float]  # (2H,): the training mean, the simplest baseline
    stack: list[list[float]]  # (2H, 7): weights of STACK_INPUTS
    served: list[str]  # (2H,): NETWORKS or the RANGE_BASELINES name the column serves
    # (2H,): what live skill is measured against per column: BASELINES (the baselines' blend),
    # or in heads exported before it the best single baseline.
    reference: list[str]
    interval_level: float
    interval_ratio: list[list[float]]  # (2H, 2): lower and upper multiplier of the served range
    p_long: Calibration
    p_short: Calibration
    confidence: Calibration
    confidence_source: str = METAMODEL  # what `confidence` maps: METAMODEL or CHOSEN_SIDE
    probability_served: dict[str, str] = {}  # PROBABILITIES -> MODEL or BASE_RATE
    # (2H, len(INTERVAL_GRID)): quantiles of realised / served per column, for adaptive levels;
    # empty: the intervals stay at interval_ratio.
    interval_quantiles: list[list[float]] = []
    interval_floor: list[bool] = []  # (2H,): the interval starts at 0 (a no-move point mass)
    adaptive_rate: float = 0.0  # ACI's step size gamma (0: intervals do not adapt)
    # The online probability shift's step per resolved outcome (0: the maps do not adapt).
    probability_rate: float = 0.0
    # Symbols of the training set, the universe both steps were replayed on: live, a step is
    # scaled by symbols / served series, so a bar resolving 10,000 correlated outcomes moves a
    # level as far as one resolving the training set's few (0: heads exported before: unscaled).
    rate_symbols: int = 0
    # (2H, 7): the baselines' blend (zero on both networks): the reference the gate tested the
    # networks against, served where they did not beat it, and live quality's skill reference.
    baseline_stack: list[list[float]] = []
    # The path model for any take-profit and stop, and per barrier cell what its gate serves
    # (features/barriers.py); None in heads exported before it: the fallback answers.
    barriers: BarrierHead | None = None

    def check(self, n_ranges: int) -> None:
        """Refuses a head built for other baseline inputs or another number of outputs."""
        if self.baseline_version != BASELINE_VERSION:
            raise ValueError(
                f"serving head built on baseline inputs v{self.baseline_version}, this server "
                f"computes v{BASELINE_VERSION}; retrain with `make models`"
            )
        shapes = {
            "har_coef": (np.shape(self.har_coef), (n_ranges, 5)),
            "log_har_coef": (np.shape(self.log_har_coef), (n_ranges, 7)),
            "log_har_smear": (np.shape(self.log_har_smear), (n_ranges,)),
            "gk_coef": (np.shape(self.gk_coef), (n_ranges, 5)),
            "seasonal": (np.shape(self.seasonal), (SEASON_CELLS, n_ranges)),
            "train_mean": (np.shape(self.train_mean), (n_ranges,)),
            "stack": (np.shape(self.stack), (n_ranges, len(STACK_INPUTS))),
            "served": ((len(self.served),), (n_ranges,)),
            "reference": ((len(self.reference),), (n_ranges,)),
            "interval_ratio": (np.shape(self.interval_ratio), (n_ranges, 2)),
        }
        if self.interval_quantiles:
            shapes["interval_quantiles"] = (
                np.shape(self.interval_quantiles),
                (n_ranges, len(INTERVAL_GRID)),
            )
            shapes["interval_floor"] = ((len(self.interval_floor),), (n_ranges,))
        if self.baseline_stack or BASELINES in self.reference:
            shapes["baseline_stack"] = (
                np.shape(self.baseline_stack),
                (n_ranges, len(STACK_INPUTS)),
            )
        if self.confidence_source not in CONFIDENCE_SOURCES:
            raise ValueError(
                f"serving head's confidence_source {self.confidence_source!r} is none of "
                f"{CONFIDENCE_SOURCES}; retrain with `make models`"
            )
        wrong = {k: v for k, v in shapes.items() if v[0] != v[1]}
        if wrong:
            raise ValueError(f"serving head has wrong shapes (got, expected): {wrong}")
        if self.barriers is not None:
            self.barriers.check(n_ranges // 2)
        unknown = set(self.served) - {NETWORKS, BASELINES, *RANGE_BASELINES}
        if unknown or not set(self.reference) <= {BASELINES, *RANGE_BASELINES}:
            raise ValueError(f"serving head names unknown range sources: {sorted(unknown)}")

    def probability_source(self, name: str) -> str:
        return self.probability_served.get(name, MODEL)


@dataclass(frozen=True)
class ServedOutput:
    """What is served for a batch of N bars; ranges in ATR units, [up, down] per horizon."""

    ranges: F64  # (N, 2H)
    intervals: F64 | None  # (N, 2H, 2): [lower, upper] per column; None without a head
    baseline: F64 | None  # (N, 2H): the reference baseline's ranges (live skill); None w/o head
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


def _linear(coef: npt.ArrayLike, x: F64) -> F64:
    """(N, 2H): intercept + coefficients x inputs, per column (NaN inputs count as 0)."""
    table = np.asarray(coef, np.float64)
    out: F64 = table[:, 0] + np.nan_to_num(x, nan=0.0) @ table[:, 1:].T
    return out


def har_ranges(coef: npt.ArrayLike, baseline: F64) -> F64:
    """HAR on the log-range inputs (unknown inputs: the windows' ranges equal the ATR)."""
    return _linear(coef, baseline[:, HAR_COLUMNS])


def log_har_inputs(baseline: F64) -> F64:
    return np.concatenate([baseline[:, HAR_COLUMNS], baseline[:, LEVERAGE_COLUMNS]], axis=1)


def log_har_ranges(coef: npt.ArrayLike, smear: npt.ArrayLike, baseline: F64) -> F64:
    """log-HAR with leverage: exp(linear) x smearing factor - offset, never below 0."""
    logs = np.minimum(_linear(coef, log_har_inputs(baseline)), 30.0)
    out: F64 = np.maximum(np.exp(logs) * np.asarray(smear, np.float64) - LOG_HAR_OFFSET_ATR, 0.0)
    return out


def gk_ranges(coef: npt.ArrayLike, baseline: F64) -> F64:
    """HAR on the Garman-Klass volatility levels (in ATR units), never below 0."""
    out: F64 = np.maximum(_linear(coef, baseline[:, GK_COLUMNS]), 0.0)
    return out


def seasonal_ranges(table: npt.ArrayLike, season: npt.NDArray[np.int64]) -> F64:
    """(N, 2H) seasonal baseline: the (day of week, hour) cell's mean target."""
    out: F64 = np.asarray(table, np.float64)[np.clip(season, 0, SEASON_CELLS - 1)]
    return out


def baseline_predictions(
    head: ServingHead, baseline: F64, season: npt.NDArray[np.int64]
) -> dict[str, F64]:
    """Every range baseline but the training mean (the stack's intercept), (N, 2H) each."""
    return {
        "har": har_ranges(head.har_coef, baseline),
        "seasonal": seasonal_ranges(head.seasonal, season),
        "log_har": log_har_ranges(head.log_har_coef, head.log_har_smear, baseline),
        "har_gk": gk_ranges(head.gk_coef, baseline),
    }


def stack_ranges(weights: npt.ArrayLike, inputs: list[F64]) -> F64:
    """(N, 2H) served range: per column, weights . [1, *inputs] (STACK_INPUTS order), >= 0."""
    w = np.asarray(weights, np.float64)
    total = np.broadcast_to(w[:, 0], inputs[0].shape).copy()
    for k, values in enumerate(inputs, start=1):
        total += w[:, k] * values
    out: F64 = np.maximum(total, 0.0)
    return out


def stack_inputs(gru: F64, transformer: F64, baselines: dict[str, F64]) -> list[F64]:
    """The stack's inputs after its intercept, in STACK_INPUTS order."""
    return [gru, transformer, *(baselines[name] for name in STACK_INPUTS[3:])]


def reference_ranges(
    reference: list[str], baselines: dict[str, F64], intercept: npt.ArrayLike
) -> F64:
    """(N, 2H): per column the named baseline's prediction (train_mean: the given level;
    BASELINES: the baselines' blend)."""
    first = next(iter(baselines.values()))
    out = np.empty_like(first)
    level = np.asarray(intercept, np.float64)
    for j, name in enumerate(reference):
        out[:, j] = level[j] if name == "train_mean" else baselines[name][:, j]
    return out


@dataclass(frozen=True)
class OnlineLevels:
    """What live outcomes moved since the head was fitted (orchestrator/quality/adaptive.py),
    one value per (timeframe, model version) shared by every replica."""

    miscoverage: F64 | None = None  # (2H,): the intervals' level per column; None: the fitted
    probability_shift: F64 | None = None  # (3,) in PROBABILITIES order; None: no shift

    def key(self) -> bytes:
        """Equal for equal levels: predictions that share them are served in one batch."""
        parts = (self.miscoverage, self.probability_shift)
        return b"|".join(b"-" if v is None else v.tobytes() for v in parts)


def shifted(p: F64, shift: float) -> F64:
    """A probability moved by `shift`, kept inside [PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR]."""
    out: F64 = np.clip(p + shift, PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
    return out


def interval_ratios(head: ServingHead, miscoverage: npt.ArrayLike | None) -> F64:
    """(2H, 2) multipliers of the served range for the given miscoverage per column (None, or a
    head without quantiles: the fitted 80 % multipliers). The fitted multipliers moved by the
    quantile table's change from the nominal level to the asked one, so the nominal level gives
    exactly the fitted interval. Equal tails, or [0, upper] where the column starts at 0."""
    fitted = np.asarray(head.interval_ratio, np.float64)
    if miscoverage is None or not head.interval_quantiles:
        return fitted
    alpha = np.clip(np.asarray(miscoverage, np.float64), 0.0, 1.0)
    nominal = 1.0 - head.interval_level
    grid = np.asarray(INTERVAL_GRID)
    out = fitted.copy()
    for j, table in enumerate(head.interval_quantiles):
        if head.interval_floor[j]:
            out[j, 1] += np.interp(1 - alpha[j], grid, table) - np.interp(1 - nominal, grid, table)
        else:
            out[j, 0] += np.interp(alpha[j] / 2, grid, table) - np.interp(nominal / 2, grid, table)
            out[j, 1] += np.interp(1 - alpha[j] / 2, grid, table) - np.interp(
                1 - nominal / 2, grid, table
            )
    return np.maximum(out, 0.0)


def apply_head(
    head: ServingHead | None,
    gru: Floats,
    transformer: Floats,
    baseline: F64,
    season: npt.NDArray[np.int64],
    p_long: Floats,
    p_short: Floats,
    confidence: Floats,
    levels: OnlineLevels | None = None,
) -> ServedOutput:
    """The served numbers for N bars (see the module docstring); `levels` moves the intervals'
    level per column (adaptive conformal) and shifts the probabilities; None keeps the fitted."""
    gru64, transformer64 = np.asarray(gru, np.float64), np.asarray(transformer, np.float64)
    if head is None:
        return ServedOutput(
            (gru64 + transformer64) / 2,
            None,
            None,
            *(np.asarray(p, np.float64) for p in (p_long, p_short, confidence)),
        )
    baselines = baseline_predictions(head, baseline, season)
    inputs = stack_inputs(gru64, transformer64, baselines)
    ranges = stack_ranges(head.stack, inputs)
    if head.baseline_stack:
        baselines[BASELINES] = stack_ranges(head.baseline_stack, inputs)
    levels = levels or OnlineLevels()
    ratio = interval_ratios(head, levels.miscoverage)
    intervals = ranges[:, :, np.newaxis] * ratio[np.newaxis]
    raw_long, raw_short = np.asarray(p_long, np.float64), np.asarray(p_short, np.float64)
    raw_confidence = (
        chosen_side_p(raw_long, raw_short)
        if head.confidence_source == CHOSEN_SIDE
        else np.asarray(confidence, np.float64)
    )
    probabilities = [
        head.p_long(raw_long),
        head.p_short(raw_short),
        head.confidence(raw_confidence),
    ]
    if levels.probability_shift is not None:
        probabilities = [
            shifted(p, float(s))
            for p, s in zip(probabilities, levels.probability_shift, strict=True)
        ]
    return ServedOutput(
        ranges,
        intervals,
        reference_ranges(head.reference, baselines, head.train_mean),
        *probabilities,
    )


def chosen_side_p(p_long: F64, p_short: F64) -> F64:
    """The raw P(win) of the side the signal takes (long when P(long) >= P(short), as the
    ensemble's direction output)."""
    out: F64 = np.maximum(p_long, p_short)
    return out
