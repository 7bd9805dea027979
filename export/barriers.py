"""The barrier model's fit, its nested scoring and its gate (serving: features/barriers.py).

Per horizon the path model has five numbers: three drift coefficients on what the bar close
already served (drift_inputs), the log of a multiplier of the fallback's volatility, and the
dispersion of a log-normal volatility mixture. They are fitted by minimising the three-outcome
Brier score over every barrier cell of the grid, both sides, on rows spaced evenly in time
(neighbouring rows share most of their path, so more rows add little but cost): the drift and
the level first, then all five. Scored nested like the head: fold k's model is fitted on folds
1..k-1 (fold 0 has no served ranges to read), so the first scored fold is 2. The gate per cell
(side, horizon, take-profit, stop) is the head's one-sided Diebold-Mariano test with HAC
variance that the model's Brier loss is below the fallback's, at GATE_ALPHA, and in addition
the model's P(take-profit first) and P(stop first) must be calibrated there (ECE_TARGET).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize  # type: ignore[import-untyped]

from export.evaluation import ECE_TARGET, expected_calibration_error, reliability
from export.gate import GATE_ALPHA, GateDecision, dm_test
from orchestrator.features.barriers import (
    BARRIER_VERSION,
    BROWNIAN,
    FALLBACK,
    MODEL,
    SIDES,
    SL_GRID_ATR,
    TP_GRID_ATR,
    BarrierHead,
    PathShape,
    barrier_odds,
    drift_inputs,
    fallback_scale,
)
from orchestrator.features.targets import STOP, TAKE_PROFIT

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]

FIT_ROWS = 500  # rows per horizon the fit reads, evenly spaced in time
FIT_ITERATIONS = 20
# A drift must pay for its spread: the fit's loss adds this x the variance of the fitted drift
# (in units of s^2) across rows. Without it the slopes swung from -1.8 to +3.6 between fits of
# the same real 1h rows; a planted drift of 0.5 s per unit of signal is still found.
DRIFT_PENALTY = 0.01
MIN_FIT_ROWS = 50


@dataclass(frozen=True, eq=False)
class PathFit:
    """One horizon's path model: drift coefficients (units of s), log volatility scale, and its
    departures from one Brownian motion (PathShape)."""

    coef: F64
    log_scale: float
    shape: PathShape = BROWNIAN

    @classmethod
    def none(cls) -> PathFit:
        """The fallback itself: no drift, the served volatility, one Brownian motion."""
        return cls(np.zeros(3), 0.0)

    @classmethod
    def of(cls, theta: F64) -> PathFit:
        return cls(np.asarray(theta[:3]), float(theta[3]), PathShape(float(theta[4])))

    def vector(self) -> F64:
        return np.array([*self.coef, self.log_scale, self.shape.dispersion])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathFit) and np.array_equal(self.vector(), other.vector())

    __hash__ = None  # type: ignore[assignment]


def cell_probabilities(scale: F64, drift_sd: F64, bars: F64, shape: PathShape = BROWNIAN) -> F64:
    """(n, sides, tp, sl, 3): [P(tp first), P(stop first), P(neither)] on the grid, for paths of
    sd `scale` over `bars` bars drifting `drift_sd` x scale (the long side's way)."""
    tp = np.asarray(TP_GRID_ATR)[None, :, None]
    sl = np.asarray(SL_GRID_ATR)[None, None, :]
    s, h = scale[:, None, None], bars[:, None, None]
    m = (np.clip(drift_sd, -2.0, 2.0) * scale)[:, None, None]
    sides = []
    for sign in (1.0, -1.0):
        odds = barrier_odds(tp, sl, sign * m, s, h, exit_times=False, shape=shape)
        sides.append(np.stack([odds.p_tp, odds.p_sl, odds.p_neither], axis=-1))
    return np.stack(sides, axis=1)


def brier_losses(probabilities: F64, outcomes: I8) -> F64:
    """(n, sides, tp, sl) multiclass Brier loss per row and cell; NaN where the outcome is
    unknown (-1)."""
    truth = np.stack([outcomes == code for code in (1, 2, 0)], axis=-1)
    loss = ((probabilities - truth) ** 2).sum(axis=-1)
    return np.where(outcomes >= 0, loss, np.nan)


def _model_probabilities(fit: PathFit, scale: F64, inputs: F64, bars: F64) -> F64:
    return cell_probabilities(scale * math.exp(fit.log_scale), inputs @ fit.coef, bars, fit.shape)


BOUNDS = [
    (-2.0, 2.0),
    (-4.0, 4.0),
    (-10.0, 10.0),
    (-1.0, 1.0),
    (0.0, 0.75),
]


def fit_path(
    scale: F64, inputs: F64, outcomes: I8, bars: F64, start: PathFit | None = None
) -> PathFit:
    """Minimise the mean Brier loss over the grid on at most FIT_ROWS rows spaced in time, from
    the fallback and from `start` (the previous fold's fit), keeping the better: a start fitted
    on fewer rows can hold the search in a worse basin."""
    usable = np.flatnonzero(
        np.isfinite(scale) & np.isfinite(inputs).all(axis=1) & (outcomes >= 0).all(axis=(1, 2, 3))
    )
    if usable.size < MIN_FIT_ROWS:
        return PathFit.none()
    rows = usable[np.linspace(0, usable.size - 1, min(FIT_ROWS, usable.size)).astype(np.int64)]
    s, x, y, h = scale[rows], inputs[rows], outcomes[rows], bars[rows]

    def loss(theta: F64) -> float:
        brier = float(brier_losses(_model_probabilities(PathFit.of(theta), s, x, h), y).mean())
        return brier + DRIFT_PENALTY * float(np.var(x[:, 1:] @ theta[1:3]))

    # A drift input that is constant on these rows (P(long) and P(short) both served as base
    # rates) would only duplicate the intercept, unpenalised: its slope is held at 0.
    bounds = [
        (0.0, 0.0) if 1 <= j <= 2 and np.ptp(x[:, j]) < 1e-9 else bound
        for j, bound in enumerate(BOUNDS)
    ]

    def search(begin: F64, free: int) -> tuple[float, F64]:
        """L-BFGS-B over the first `free` parameters, the rest held at `begin`'s."""
        begin = np.clip(begin, [b[0] for b in bounds], [b[1] for b in bounds])

        def partial(head: F64) -> float:
            return loss(np.concatenate([head, begin[free:]]))

        result = minimize(
            partial,
            begin[:free],
            method="L-BFGS-B",
            bounds=bounds[:free],
            options={"maxiter": FIT_ITERATIONS, "eps": 1e-4},
        )
        return float(result.fun), np.concatenate([result.x, begin[free:]])

    # The drift and the volatility level first, then every parameter from there: fitted
    # together from the start, a vol mixture stood in for a drift that varies across rows.
    _, drift_first = search(PathFit.none().vector(), 4)
    results = [search(drift_first, 5)]
    if start is not None:
        results.append(search(start.vector(), 5))
    return PathFit.of(min(results, key=lambda r: r[0])[1])


@dataclass(frozen=True)
class BarrierRows:
    """The out-of-fold rows the barrier model is fitted and judged on, in time order."""

    fold: I64
    ts: I64
    ranges: F64  # (n, 2H) served ranges, after the head's gate (NaN on fold 0)
    p_long: F64  # served P(long wins), P(short wins)
    p_short: F64
    outcomes: I8  # (n, sides, H, tp, sl) outcome codes on the grid
    label_bars: list[int]  # per horizon, the longest over the symbols: the gate's HAC lags
    bars: F64  # (n, H) each row's horizons in bars on its symbol's calendar

    def horizon_inputs(self, k: int) -> tuple[F64, F64]:
        """(fallback sd (n,), drift inputs (n, 3)) of horizon k from the served numbers."""
        up, down = self.ranges[:, 2 * k], self.ranges[:, 2 * k + 1]
        return fallback_scale(up, down), drift_inputs(up, down, self.p_long, self.p_short)


@dataclass
class NestedBarriers:
    """Per horizon: model and fallback probabilities on the grid for folds >= 2 (NaN before),
    their Brier losses, and the served probabilities after the nested gate (fold k's gate read
    folds 2..k-1)."""

    model: list[F64] = field(default_factory=list)  # (n, sides, tp, sl, 3) per horizon
    fallback: list[F64] = field(default_factory=list)
    served: list[F64] = field(default_factory=list)
    model_loss: list[F64] = field(default_factory=list)  # (n, sides, tp, sl) per horizon
    fallback_loss: list[F64] = field(default_factory=list)
    fits: dict[int, list[PathFit]] = field(default_factory=dict)  # fold -> fit per horizon


def _calibrated(p: F64, outcomes: I8) -> bool:
    """P(take-profit first) and P(stop first) within ECE_TARGET of what happened."""
    return all(
        expected_calibration_error(p[:, column], (outcomes == code).astype(np.float64))
        <= ECE_TARGET
        for column, code in ((0, TAKE_PROFIT), (1, STOP))
    )


def cell_gate(
    model: F64, model_loss: F64, fallback_loss: F64, outcomes: I8, ts: I64, label_bars: int
) -> list[list[list[GateDecision]]]:
    """[side][tp][sl]: MODEL where the one-sided DM test finds the model's Brier loss lower
    *and* its probabilities (n, sides, tp, sl, 3) are calibrated on the same rows; otherwise
    FALLBACK."""
    out = []
    for side in range(len(SIDES)):
        table = []
        for i in range(len(TP_GRID_ATR)):
            row = []
            for j in range(len(SL_GRID_ATR)):
                m, f = model_loss[:, side, i, j], fallback_loss[:, side, i, j]
                known = np.isfinite(m) & np.isfinite(f)
                if known.sum() == 0:
                    row.append(GateDecision(FALLBACK, FALLBACK, math.nan, math.nan, 0))
                    continue
                _, p_value = dm_test(m[known] - f[known], ts[known], label_bars)
                skill = 1 - float(m[known].mean()) / max(float(f[known].mean()), 1e-12)
                passed = bool(p_value < GATE_ALPHA) and _calibrated(
                    model[known, side, i, j], outcomes[known, side, i, j]
                )
                served = MODEL if passed else FALLBACK
                row.append(GateDecision(served, FALLBACK, p_value, skill, int(known.sum())))
            table.append(row)
        out.append(table)
    return out


def nested_barriers(rows: BarrierRows) -> NestedBarriers:
    """Fit fold k's path model on folds 1..k-1, score it and the fallback on fold k (k >= 2),
    and serve per cell what the gate on folds 2..k-1 chose (fold 2: the fallback)."""
    fold, outcomes = rows.fold, rows.outcomes
    n, horizons = len(fold), outcomes.shape[2]
    out = NestedBarriers()
    shape = (n, len(SIDES), len(TP_GRID_ATR), len(SL_GRID_ATR))
    for k in range(horizons):
        scale, inputs = rows.horizon_inputs(k)
        y, h = outcomes[:, :, k], rows.bars[:, k].astype(np.float64)
        model, fallback = np.full((*shape, 3), np.nan), np.full((*shape, 3), np.nan)
        model_loss, fallback_loss = np.full(shape, np.nan), np.full(shape, np.nan)
        served = np.full((*shape, 3), np.nan)
        fit = None
        for f in range(2, int(fold.max()) + 1):
            before, now = (fold >= 1) & (fold < f), fold == f
            fit = fit_path(scale[before], inputs[before], y[before], h[before], fit)
            out.fits.setdefault(f, []).append(fit)
            model[now] = _model_probabilities(fit, scale[now], inputs[now], h[now])
            fallback[now] = _model_probabilities(PathFit.none(), scale[now], inputs[now], h[now])
            model_loss[now] = brier_losses(model[now], y[now])
            fallback_loss[now] = brier_losses(fallback[now], y[now])
            served[now] = fallback[now]  # fold 2: nothing shown yet
            earlier = (fold >= 2) & (fold < f)
            if earlier.any():
                gates = cell_gate(
                    model[earlier],
                    model_loss[earlier],
                    fallback_loss[earlier],
                    y[earlier],
                    rows.ts[earlier],
                    rows.label_bars[k],
                )
                use_model = np.array([[[d.served == MODEL for d in r] for r in t] for t in gates])
                served[now] = np.where(use_model[None, ..., None], model[now], fallback[now])
        out.model.append(model)
        out.fallback.append(fallback)
        out.served.append(served)
        out.model_loss.append(model_loss)
        out.fallback_loss.append(fallback_loss)
    return out


def _pooled_reliability(
    probabilities: F64, outcomes: I8, gates: list[list[list[GateDecision]]], source: str
) -> list[dict[str, float]]:
    """P(take-profit first) and P(stop first) of every cell that serves `source`, pooled, per
    probability decile (the card's reliability diagram)."""
    served = np.array([[[d.served == source for d in row] for row in t] for t in gates])
    known = outcomes[:, served] >= 0
    p = np.concatenate([probabilities[..., column][:, served][known] for column in (0, 1)])
    hit = np.concatenate(
        [(outcomes[:, served] == code)[known].astype(np.float64) for code in (TAKE_PROFIT, STOP)]
    )
    return [
        {"mean_p": r["mean_p"], "observed": r["observed"], "count": r["count"]}
        for r in reliability(p, hit)
    ]


def card_cells(section: dict[str, Any]) -> list[dict[str, Any]]:
    """The card's barrier cells as one dict per cell."""
    table = section["cells"]
    return [dict(zip(table["columns"], row, strict=True)) for row in table["rows"]]


def _rounded_record(record: dict[str, Any]) -> dict[str, Any]:
    """Floats to 5 decimals: the card's 160 cells are read by people, not refitted."""
    return {k: round(float(v), 5) if isinstance(v, float) else v for k, v in record.items()}


def _fallback(decision: GateDecision) -> GateDecision:
    return msgspec.structs.replace(decision, served=FALLBACK)


def fit_barrier_head(rows: BarrierRows, horizons: list[str]) -> tuple[BarrierHead, dict[str, Any]]:
    """The exported head (path fits on every row of folds >= 1, the gate on the nested losses of
    folds >= 2) and its card section: per cell the model's and the fallback's Brier, the served
    Brier skill over the fallback (nested gate), the test's p-value and the served ECE."""
    nested = nested_barriers(rows)
    scored, used = rows.fold >= 2, rows.fold >= 1
    fits: list[PathFit] = []
    served_names = []
    reliability_tables: dict[str, dict[str, list[dict[str, float]]]] = {}
    cells: list[dict[str, Any]] = []
    for k, name in enumerate(horizons):
        scale, inputs = rows.horizon_inputs(k)
        last_nested = nested.fits[max(nested.fits)][k] if nested.fits else None
        y_used, bars_used = rows.outcomes[used, :, k], rows.bars[used, k]
        fit = fit_path(scale[used], inputs[used], y_used, bars_used, last_nested)
        fits.append(fit)
        y = rows.outcomes[scored, :, k]
        model, fallback = nested.model[k][scored], nested.fallback[k][scored]
        model_loss, fallback_loss = nested.model_loss[k][scored], nested.fallback_loss[k][scored]
        served_loss = brier_losses(nested.served[k][scored], y)
        gates = cell_gate(model, model_loss, fallback_loss, y, rows.ts[scored], rows.label_bars[k])
        if fit == PathFit.none():  # too few rows to fit: the exported model is the fallback
            gates = [[[_fallback(d) for d in row] for row in table] for table in gates]
        reliability_tables[name] = {
            source: _pooled_reliability(probabilities, y, gates, source)
            for source, probabilities in ((MODEL, model), (FALLBACK, fallback))
        }
        served_names.append([[[d.served for d in row] for row in table] for table in gates])
        for side, side_name in enumerate(SIDES):
            for i, tp in enumerate(TP_GRID_ATR):
                for j, sl in enumerate(SL_GRID_ATR):
                    known = y[:, side, i, j] >= 0
                    decision = gates[side][i][j]
                    # Calibration of what the exported head serves in this cell, on the
                    # nested rows (the model fitted on earlier folds, or the fallback).
                    chosen = model if decision.served == MODEL else fallback
                    p_served = chosen[known, side, i, j]
                    truth = y[known, side, i, j]
                    fallback_mean = float(np.nanmean(fallback_loss[:, side, i, j]))
                    served_mean = float(np.nanmean(served_loss[:, side, i, j]))
                    hit_tp = (truth == TAKE_PROFIT).astype(np.float64)
                    hit_sl = (truth == STOP).astype(np.float64)
                    cells.append(
                        _rounded_record(
                            {
                                "side": side_name,
                                "horizon": name,
                                "tp_atr": tp,
                                "sl_atr": sl,
                                "served": decision.served,
                                "p_value": decision.p_value,
                                "model_brier": float(np.nanmean(model_loss[:, side, i, j])),
                                "fallback_brier": fallback_mean,
                                "served_skill": 1 - served_mean / max(fallback_mean, 1e-12),
                                "model_skill": decision.skill,
                                "ece_tp": expected_calibration_error(p_served[:, 0], hit_tp),
                                "ece_sl": expected_calibration_error(p_served[:, 1], hit_sl),
                                "rate_tp": float(hit_tp.mean()),
                                "rate_sl": float(hit_sl.mean()),
                                "rows": int(known.sum()),
                            }
                        )
                    )
    head = BarrierHead(
        version=BARRIER_VERSION,
        tp_grid=list(TP_GRID_ATR),
        sl_grid=list(SL_GRID_ATR),
        drift_coef=[[round(float(v), 6) for v in f.coef] for f in fits],
        log_scale=[round(f.log_scale, 6) for f in fits],
        dispersion=[round(f.shape.dispersion, 6) for f in fits],
        served=[
            [served_names[k][side] for k in range(len(horizons))] for side in range(len(SIDES))
        ],
    )
    card = {
        "alpha": GATE_ALPHA,
        "ece_target": ECE_TARGET,
        # One row per cell under its column names: 160 cells as dicts made each card 5x larger.
        "cells": {
            "columns": list(cells[0]) if cells else [],
            "rows": [list(cell.values()) for cell in cells],
        },
        "reliability": reliability_tables,
        "head": msgspec.to_builtins(head),
    }
    return head, card
