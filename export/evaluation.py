"""Out-of-sample evaluation of the networks, the baselines and the served ensemble.

Everything here is scored on walk-forward test folds. The served ensemble is evaluated *nested*:
for test fold k its stack weights, gate decisions, interval multipliers and probability maps are
fitted on the out-of-fold rows of folds before k only, exactly as the exported head is fitted on
all of them and then meets the future. Fold 0 has no earlier folds, so the served numbers are
scored from fold 1 (the metamodel's calibrated confidence from fold 2: its own out-of-fold scores
start at fold 1). The gate for fold k tests the blend's nested losses on folds 1..k-1, so fold 1
is always served by the baselines (nothing has been shown yet) and the calibrated probabilities
likewise need a fold of evidence before they replace the base rate.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import stats  # type: ignore[import-untyped]
from sklearn.metrics import log_loss, roc_auc_score

from export.baselines import (
    INTERVAL_LEVEL,
    fit_baseline_stack,
    fit_blend,
    fit_calibration,
    fit_interval_quantiles,
    fit_interval_ratios,
)
from export.gate import GateDecision, probability_gate, qlike, range_gate
from orchestrator.features.head import (
    CHOSEN_SIDE,
    INTERVAL_GRID,
    METAMODEL,
    MODEL,
    NETWORKS,
    RANGE_BASELINES,
    chosen_side_p,
    shifted,
    stack_ranges,
)
from orchestrator.quality.adaptive import MISCOVERAGE_BOUNDS, probability_shift

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

RANGE_MODELS = ("gru", "transformer", "networks_mean", "blend", "baselines", "served")
MIN_DECILE_TRADES = 100
RELIABILITY_TOLERANCE = 0.05
ECE_TARGET = 0.03
COVERAGE_TOLERANCE = 0.03
CONFIDENCE_LABELS = {METAMODEL: "the metamodel", CHOSEN_SIDE: "the chosen side's classifier"}


@dataclass
class OutOfFold:
    """Per test row of every fold, in time order: truths, model and baseline predictions."""

    fold: I64
    ts: I64  # the bar's open time, ns (the gate's tests run on one series in time order)
    ranges: F64  # (n, 2H) realised, ATR units
    gru: F64
    transformer: F64
    train_mean: F64  # the fold's baselines, fitted on its training rows (RANGE_BASELINES)
    seasonal: F64
    har: F64
    log_har: F64
    har_gk: F64
    long_won: F64
    short_won: F64
    p_long: F64  # XGBoost P(win), raw
    p_short: F64
    p_long_har: F64  # logistic on the HAR inputs
    p_short_har: F64
    base_long: F64  # the fold's training base rate
    base_short: F64
    meta: F64  # metamodel P(the chosen trade wins) from a metamodel fitted on earlier folds
    won: F64  # the chosen trade's outcome
    direction: F64
    # (n, sides, H, tp, sl) barrier outcomes on the grid (features/targets.barrier_outcomes);
    # empty in folds saved before the barrier model.
    barriers: npt.NDArray[np.int8] = dataclasses.field(
        default_factory=lambda: np.zeros((0,), np.int8)
    )
    horizon_bars: I64 = dataclasses.field(  # (n, H) on each row's symbol's calendar
        default_factory=lambda: np.zeros((0, 0), np.int64)
    )
    # Each row's symbol, an index into the card's `symbols` (empty in folds saved before).
    symbol: I64 = dataclasses.field(default_factory=lambda: np.zeros((0,), np.int64))

    def save(self, path: Path) -> None:
        np.savez_compressed(path, **dataclasses.asdict(self))

    @classmethod
    def load(cls, path: Path) -> OutOfFold:
        with np.load(path) as arrays:
            names = [f.name for f in dataclasses.fields(cls) if f.name in arrays]
            return cls(**{name: arrays[name] for name in names})

    def confidence_inputs(self) -> dict[str, F64]:
        """The raw scores a served confidence can map (see ServingHead.confidence_source)."""
        return {METAMODEL: self.meta, CHOSEN_SIDE: chosen_side_p(self.p_long, self.p_short)}

    def stack_inputs(self, rows: Bool | slice = slice(None)) -> list[F64]:
        """The stack's inputs after its intercept, in STACK_INPUTS order."""
        return [
            self.gru[rows],
            self.transformer[rows],
            self.har[rows],
            self.seasonal[rows],
            self.log_har[rows],
            self.har_gk[rows],
        ]

    def baselines(self, rows: Bool | slice = slice(None)) -> dict[str, F64]:
        return {name: getattr(self, name)[rows] for name in RANGE_BASELINES}


@dataclass(frozen=True)
class Lags:
    """Bars each output's label spans: the HAC lags of the gate's tests."""

    ranges: list[int]  # per range column
    label: int  # the TP/SL label horizon


@dataclass
class NestedServed:
    """The served numbers for folds >= 1 (NaN on fold 0), each fitted on the folds before."""

    ranges: F64  # (n, 2H), after the gate
    blend: F64  # (n, 2H), the networks' blend before the gate (the gate of later folds tests it)
    baseline_blend: F64  # (n, 2H), the baselines' blend: the gate's reference
    lower: F64  # interval bounds, ATR units
    upper: F64
    p_long: F64  # after the gate
    p_short: F64
    confidence: F64  # from `confidence_source`, after the gate; NaN on folds 0 and 1
    # The calibrated model probabilities before the gate (what the gate tests).
    model: dict[str, F64] = dataclasses.field(default_factory=dict)
    # The two candidates for the confidence, both calibrated nested on the chosen trade's outcome.
    candidates: dict[str, F64] = dataclasses.field(default_factory=dict)
    confidence_source: str = METAMODEL
    # The chosen trade's win rate on the folds before (the confidence's base rate: the chosen
    # side wins more often than its side's unconditional rate when the classifier ranks).
    confidence_base: F64 = dataclasses.field(default_factory=lambda: np.zeros(0))
    # What each fold >= 1 served per range column / probability (fold -> decisions).
    fold_gates: dict[int, dict[str, str]] = dataclasses.field(default_factory=dict)
    # Per fold >= 1: the conformal quantile table (2H, grid) and the zero-floored columns, fitted
    # on the folds before (what adaptive intervals read their level from).
    interval_tables: dict[int, tuple[F64, list[bool]]] = dataclasses.field(default_factory=dict)


def choose_confidence_source(candidates: dict[str, F64], won: F64) -> str:
    """The candidate with the lower Brier score on the rows where every candidate is scored
    (Brier rather than log-loss: a few confident misses must not decide it)."""
    rows = np.logical_and.reduce([np.isfinite(c) for c in candidates.values()])
    if not rows.any():
        return METAMODEL
    return min(candidates, key=lambda name: _brier(candidates[name][rows], won[rows]))


def probability_inputs(oof: OutOfFold, served: NestedServed) -> dict[str, tuple[F64, F64, F64]]:
    """Per served probability: (calibrated model, base rate, outcome), before the gate."""
    return {
        "p_long": (served.model["p_long"], oof.base_long, oof.long_won),
        "p_short": (served.model["p_short"], oof.base_short, oof.short_won),
        "confidence": (
            served.candidates[served.confidence_source],
            served.confidence_base,
            oof.won,
        ),
    }


def gate_decisions(
    oof: OutOfFold, served: NestedServed, lags: Lags, rows: Bool
) -> tuple[list[GateDecision], dict[str, GateDecision]]:
    """The gate on `rows` (nested losses): per range column, and per probability."""
    ranges = range_gate(
        served.blend[rows],
        served.baseline_blend[rows],
        oof.ranges[rows],
        oof.ts[rows],
        lags.ranges,
    )
    probabilities = {}
    for name, (model, base, outcome) in probability_inputs(oof, served).items():
        scored = rows & np.isfinite(model)
        probabilities[name] = probability_gate(
            model[scored], base[scored], outcome[scored], oof.ts[scored], lags.label
        )
    return ranges, probabilities


def _served_source(decision: GateDecision, blend: F64, baseline_blend: F64, j: int) -> F64:
    return blend[:, j] if decision.served == NETWORKS else baseline_blend[:, j]


def nested_served(oof: OutOfFold, lags: Lags) -> NestedServed:
    n, width = oof.ranges.shape
    raw = oof.confidence_inputs()

    def empty() -> F64:
        return np.full(n, np.nan)

    out = NestedServed(
        ranges=np.full((n, width), np.nan),
        blend=np.full((n, width), np.nan),
        baseline_blend=np.full((n, width), np.nan),
        lower=np.full((n, width), np.nan),
        upper=np.full((n, width), np.nan),
        p_long=empty(),
        p_short=empty(),
        confidence=empty(),
        model={"p_long": empty(), "p_short": empty()},
        candidates={name: empty() for name in raw},
        confidence_base=empty(),
    )
    last = int(oof.fold.max())
    stacks: dict[int, tuple[F64, F64]] = {}  # fold -> (blend, reference) fitted on the folds before
    for k in range(1, last + 1):
        before, now = oof.fold < k, oof.fold == k
        weights = fit_blend(oof.stack_inputs(before), oof.ranges[before], lags.ranges)
        out.blend[now] = stack_ranges(weights, oof.stack_inputs(now))
        reference = fit_baseline_stack(oof.stack_inputs(before), oof.ranges[before], lags.ranges)
        out.baseline_blend[now] = stack_ranges(reference, oof.stack_inputs(now))
        stacks[k] = weights, reference
        out.confidence_base[now] = oof.won[before].mean()
        out.model["p_long"][now] = fit_calibration(oof.p_long[before], oof.long_won[before])(
            oof.p_long[now]
        )
        out.model["p_short"][now] = fit_calibration(oof.p_short[before], oof.short_won[before])(
            oof.p_short[now]
        )
        for name, score in raw.items():
            scored = before & np.isfinite(score)
            # Scored from fold 2 for both, so they are compared on the same rows.
            if k >= 2 and scored.any():
                calibration = fit_calibration(score[scored], oof.won[scored])
                out.candidates[name][now] = calibration(score[now])
    out.confidence_source = choose_confidence_source(out.candidates, oof.won)
    for k in range(1, last + 1):
        before, now = oof.fold < k, oof.fold == k
        ranges, probabilities = gate_decisions(oof, out, lags, before)
        inputs_before = oof.stack_inputs(before)
        fitted_blend = stack_ranges(stacks[k][0], inputs_before)
        fitted_reference = stack_ranges(stacks[k][1], inputs_before)
        tables, floors = [], []
        for j, decision in enumerate(ranges):
            served = _served_source(decision, out.blend[now], out.baseline_blend[now], j)
            in_sample = _served_source(decision, fitted_blend, fitted_reference, j)
            ratios = fit_interval_ratios(in_sample[:, None], oof.ranges[before][:, j : j + 1])
            table, floor = fit_interval_quantiles(
                in_sample[:, None], oof.ranges[before][:, j : j + 1]
            )
            tables.append(table[0])
            floors += floor
            out.ranges[now, j] = served
            out.lower[now, j] = served * ratios[0, 0]
            out.upper[now, j] = served * ratios[0, 1]
        out.interval_tables[k] = (np.stack(tables), floors)
        targets = {"p_long": out.p_long, "p_short": out.p_short, "confidence": out.confidence}
        for name, (model, base, _) in probability_inputs(oof, out).items():
            use_model = probabilities[name].served == MODEL
            targets[name][now] = model[now] if use_model else base[now]
        if k == 1 or not np.isfinite(out.candidates[out.confidence_source][now]).any():
            out.confidence[now] = np.nan  # scored from fold 2, as the candidates
        out.fold_gates[k] = {
            **{f"column_{j}": d.served for j, d in enumerate(ranges)},
            **{name: d.served for name, d in probabilities.items()},
        }
    return out


def _mse(pred: F64, y: F64) -> float:
    return float(((pred - y) ** 2).mean())


def _qlike(pred: F64, y: F64) -> float:
    """QLIKE of the total range (up + down): y/p - log(y/p) - 1, the loss volatility forecasts
    are ranked by (robust to noise in the realised proxy); 0 is a perfect forecast."""
    return float(qlike(pred.sum(axis=1), y.sum(axis=1)).mean())


def _r2(pred: F64, y: F64) -> float:
    sst = float(((y - y.mean(axis=0)) ** 2).sum())
    return 1 - float(((pred - y) ** 2).sum()) / sst if sst > 0 else 0.0


def _interval(values: list[float]) -> dict[str, float]:
    """Mean of per-fold values with a 95 % t-interval across folds."""
    mean = float(np.mean(values))
    if len(values) < 2:
        return {"mean": mean, "low": math.nan, "high": math.nan, "folds": len(values)}
    half = float(
        stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / math.sqrt(len(values))
    )
    return {"mean": mean, "low": mean - half, "high": mean + half, "folds": len(values)}


def range_report(oof: OutOfFold, served: NestedServed, horizons: list[str]) -> dict[str, Any]:
    """Per horizon: R², MSE and QLIKE of every model and baseline on the folds the served
    ensemble is scored on, and the served ensemble's MSE skill over the best baseline per fold."""
    rows = np.isfinite(served.ranges).all(axis=1)
    predictions = {
        "gru": oof.gru,
        "transformer": oof.transformer,
        "networks_mean": (oof.gru + oof.transformer) / 2,
        "blend": served.blend,
        "baselines": served.baseline_blend,
        "served": served.ranges,
        **oof.baselines(),
    }
    report: dict[str, Any] = {}
    for k, horizon in enumerate(horizons):
        cols = slice(2 * k, 2 * k + 2)
        y = oof.ranges[rows, cols]
        scores = {
            name: {
                "r2": _r2(pred[rows, cols], y),
                "mse": _mse(pred[rows, cols], y),
                "qlike": _qlike(pred[rows, cols], y),
            }
            for name, pred in predictions.items()
        }
        best = min(RANGE_BASELINES, key=lambda name: scores[name]["mse"])
        per_fold = []
        for fold in np.unique(oof.fold[rows]):
            mask = rows & (oof.fold == fold)
            y_fold = oof.ranges[mask, cols]
            per_fold.append(
                1
                - _mse(served.ranges[mask, cols], y_fold)
                / _mse(predictions[best][mask, cols], y_fold)
            )
        report[horizon] = {
            "scores": scores,
            "best_baseline": best,
            "served_skill": _interval(per_fold),
            "served_skill_pooled": 1 - scores["served"]["mse"] / scores[best]["mse"],
            "networks_skill": 1 - scores["networks_mean"]["mse"] / scores[best]["mse"],
        }
    return report


def coverage_report(oof: OutOfFold, served: NestedServed, horizons: list[str]) -> dict[str, Any]:
    """Share of realised highs/lows inside their interval, per horizon and side."""
    rows = np.isfinite(served.lower).all(axis=1)
    inside = (oof.ranges[rows] >= served.lower[rows]) & (oof.ranges[rows] <= served.upper[rows])
    report: dict[str, Any] = {"level": INTERVAL_LEVEL, "rows": int(rows.sum())}
    report["overall"] = float(inside.mean())
    return _per_horizon(report, inside, horizons)


def adaptive_coverage(
    oof: OutOfFold, served: NestedServed, lags: Lags, horizons: list[str], rate: float
) -> dict[str, Any]:
    """Coverage when the intervals adapt online (adaptive conformal, as served live): the test
    folds replayed in time order, each outcome arriving its horizon's bars late, the level
    carried from fold to fold and the quantile table of each fold fitted on the folds before."""
    rows = np.flatnonzero(np.isfinite(served.ranges).all(axis=1))
    times, order, starts = _time_steps(oof.ts[rows])
    grid = np.asarray(INTERVAL_GRID)
    inside = np.zeros((rows.size, oof.ranges.shape[1]), bool)
    target_miss = 1.0 - INTERVAL_LEVEL
    for j in range(oof.ranges.shape[1]):
        delay = max(1, lags.ranges[j])
        arriving = np.zeros(times + delay)
        running = 0.0
        for t in range(times):
            running += arriving[t]
            alpha = float(np.clip(target_miss + rate * running, *MISCOVERAGE_BOUNDS))
            for r_local in order[starts[t] : starts[t + 1]]:
                r = rows[r_local]
                table, floors = served.interval_tables[int(oof.fold[r])]
                if floors[j]:
                    low, high = 0.0, np.interp(1 - alpha, grid, table[j])
                else:
                    low = np.interp(alpha / 2, grid, table[j])
                    high = np.interp(1 - alpha / 2, grid, table[j])
                pred, y = served.ranges[r, j], oof.ranges[r, j]
                hit = pred * low <= y <= pred * high
                inside[r_local, j] = hit
                arriving[t + delay] += float(hit) - INTERVAL_LEVEL
    report: dict[str, Any] = {"level": INTERVAL_LEVEL, "rate": rate, "rows": int(rows.size)}
    return _per_horizon(report, inside, horizons)


def _time_steps(ts: I64) -> tuple[int, I64, I64]:
    """Rows grouped by time, for replays in which an outcome of time t arrives at t + its
    label's bars: (number of times, row order by time, where each time's rows start)."""
    times, time_index = np.unique(ts, return_inverse=True)
    order = np.argsort(time_index, kind="stable")
    starts = np.searchsorted(time_index[order], np.arange(times.size + 1))
    return int(times.size), order, starts


def adaptive_probabilities(
    oof: OutOfFold, served: NestedServed, lags: Lags, rate: float
) -> dict[str, dict[str, Any]]:
    """The served probabilities as they are served live, shifted by the outcomes resolved so
    far (orchestrator/quality/adaptive.py): the test folds replayed in time order, each trade's
    outcome arriving its label's bars late, the shift carried from fold to fold. Per
    probability: ECE, Brier skill over what the gate served unshifted, and the reliability."""
    report: dict[str, dict[str, Any]] = {}
    delay = max(1, lags.label)
    for name, p, outcome in (
        ("long", served.p_long, oof.long_won),
        ("short", served.p_short, oof.short_won),
        ("confidence", served.confidence, oof.won),
    ):
        rows = np.flatnonzero(np.isfinite(p))
        if rows.size == 0:
            continue
        times, order, starts = _time_steps(oof.ts[rows])
        shifted_p = np.empty(rows.size)
        arriving = np.zeros((times + delay, 2))  # (wins, sum of served p) arriving at t
        wins = total = 0.0
        for t in range(times):
            wins, total = wins + arriving[t, 0], total + arriving[t, 1]
            shift = probability_shift(rate, wins, total)
            for r_local in order[starts[t] : starts[t + 1]]:
                r = rows[r_local]
                q = float(shifted(p[r], shift))
                shifted_p[r_local] = q
                arriving[t + delay] += (outcome[r], q)
        y = outcome[rows]
        report[name] = {
            "rate": rate,
            "rows": int(rows.size),
            "ece": expected_calibration_error(shifted_p, y),
            "brier_skill_vs_fixed": 1 - _brier(shifted_p, y) / _brier(p[rows], y),
            "reliability": reliability(shifted_p, y),
        }
    return report


def _per_horizon(report: dict[str, Any], inside: Bool, horizons: list[str]) -> dict[str, Any]:
    """Coverage per horizon and side from (rows, 2H) inside flags, and whether every one is
    within COVERAGE_TOLERANCE of the level."""
    for k, horizon in enumerate(horizons):
        report[horizon] = {
            "high": float(inside[:, 2 * k].mean()),
            "low": float(inside[:, 2 * k + 1].mean()),
        }
    report["within_tolerance"] = bool(
        all(
            abs(report[h][side] - INTERVAL_LEVEL) <= COVERAGE_TOLERANCE
            for h in horizons
            for side in ("high", "low")
        )
    )
    return report


def reliability(p: F64, outcome: F64, bins: int = 10) -> list[dict[str, Any]]:
    """Observed frequency per probability decile (0-0.1, ..., 0.9-1)."""
    edges = np.linspace(0, 1, bins + 1)
    table = []
    for lo, hi in itertools.pairwise(edges):
        mask = (p >= lo) & ((p < hi) | (hi == 1.0))
        if mask.any():
            gap = float(outcome[mask].mean() - p[mask].mean())
            table.append(
                {
                    "bin": f"{lo:.1f}-{hi:.1f}",
                    "count": int(mask.sum()),
                    "mean_p": float(p[mask].mean()),
                    "observed": float(outcome[mask].mean()),
                    "within_tolerance": abs(gap) <= RELIABILITY_TOLERANCE
                    or mask.sum() < MIN_DECILE_TRADES,
                }
            )
    return table


def expected_calibration_error(p: F64, outcome: F64, bins: int = 10) -> float:
    table = reliability(p, outcome, bins)
    n = sum(row["count"] for row in table)
    return float(sum(row["count"] / n * abs(row["observed"] - row["mean_p"]) for row in table))


def _auc(outcome: F64, p: F64) -> float:
    return float(roc_auc_score(outcome, p)) if len(np.unique(outcome)) == 2 else math.nan


def _brier(p: F64, outcome: F64) -> float:
    return float(((p - outcome) ** 2).mean())


def probability_report(
    name: str, p: F64, outcome: F64, baselines: dict[str, F64]
) -> dict[str, Any]:
    """AUC, log-loss, Brier skill over the base rate, ECE and the reliability table."""
    base = baselines["base_rate"]
    scores = {
        "auc": _auc(outcome, p),
        "log_loss": float(log_loss(outcome, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])),
        "brier_skill": 1 - _brier(p, outcome) / _brier(base, outcome),
        "ece": expected_calibration_error(p, outcome),
        "reliability": reliability(p, outcome),
        "rows": len(p),
    }
    scores["baselines"] = {
        label: {
            # A base rate ranks nothing (constant within a fold): its AUC is undefined.
            "auc": math.nan if label == "base_rate" else _auc(outcome, values),
            "log_loss": float(log_loss(outcome, np.clip(values, 1e-6, 1 - 1e-6), labels=[0, 1])),
            "brier_skill": 1 - _brier(values, outcome) / _brier(base, outcome),
        }
        for label, values in baselines.items()
    }
    scores["name"] = name
    return scores


def classifier_report(oof: OutOfFold, served: NestedServed) -> dict[str, Any]:
    """The served (gated) probabilities against the base rate, the HAR logistic, the raw and the
    calibrated model; the two confidence candidates for comparison."""
    rows = np.isfinite(served.p_long)
    report: dict[str, Any] = {}
    for side, raw, won, har, base in (
        ("long", oof.p_long, oof.long_won, oof.p_long_har, oof.base_long),
        ("short", oof.p_short, oof.short_won, oof.p_short_har, oof.base_short),
    ):
        baselines = {
            "base_rate": base[rows],
            "har_logistic": har[rows],
            "xgb_raw": raw[rows],
            "calibrated": served.model[f"p_{side}"][rows],
        }
        gated = getattr(served, f"p_{side}")
        report[side] = probability_report(f"P({side} wins)", gated[rows], won[rows], baselines)
    scored = np.isfinite(served.confidence)
    if scored.sum() > 0:
        base = served.confidence_base[scored]
        raw_scores = oof.confidence_inputs()
        for name, values in served.candidates.items():
            label = CONFIDENCE_LABELS[name]
            chosen = " — chosen" if name == served.confidence_source else " — not chosen"
            report[f"confidence_{name}"] = probability_report(
                f"confidence from {label}, calibrated{chosen}",
                values[scored],
                oof.won[scored],
                {"base_rate": base, f"{name}_raw": raw_scores[name][scored]},
            )
        report["confidence"] = probability_report(
            "served confidence (after the gate)",
            served.confidence[scored],
            oof.won[scored],
            {"base_rate": base},
        )
        report["confidence_source"] = served.confidence_source
        # The confidence and the classifier of the chosen side estimate the same event.
        chosen_p = np.where(oof.direction > 0, served.p_long, served.p_short)[scored]
        report["confidence_vs_classifier_gap"] = float(
            np.abs(served.confidence[scored] - chosen_p).mean()
        )
    return report
