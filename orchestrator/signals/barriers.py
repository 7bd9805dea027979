"""The caller's own take-profit and stop: the path model's three outcomes for one bar's prediction.

Everything here reads what the bar close already served (the ranges, P(long), P(short)) and the
spec's barrier head: a custom barrier costs no Triton request and no feature recomputation,
only the closed form of features/barriers.py for one row.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt

from orchestrator.errors import BadParameterError
from orchestrator.features.barriers import (
    BROWNIAN,
    FALLBACK,
    MODEL,
    SIDES,
    BarrierOdds,
    PathShape,
    barrier_odds,
    drift_inputs,
    fallback_scale,
    side_drift,
)
from orchestrator.features.spec import FeatureSpec
from orchestrator.signals.costs import cost_in_r

F64 = npt.NDArray[np.float64]
MIN_BARRIER_ATR = 0.1
MAX_BARRIER_ATR = 20.0


class Barrier(msgspec.Struct, frozen=True):
    """A trade's levels in ATR multiples from the entry, its side and the horizon's index."""

    side: str
    horizon: int
    tp_atr: float
    sl_atr: float


class BarrierOutcome(msgspec.Struct):
    """P(take-profit first), P(stop first) and P(neither within the horizon), summing to 1."""

    side: str  # "long" or "short"
    horizon: str
    horizon_bars: int  # bars the market trades within the horizon
    tp_atr: float
    sl_atr: float
    take_profit: float  # price
    stop_loss: float
    p_tp_first: float
    p_sl_first: float
    p_neither: float
    expected_bars: float  # until the first level is reached, or the horizon's end
    # p_tp x TP/SL - p_sl + the path's value when neither is reached, minus costs, in R
    expected_r: float
    cost_r: float  # the round trip's fees and slippage in R
    # "model" (the fitted path model: it beat the driftless fallback's Brier score in this
    # barrier cell out of sample) or "fallback" (a driftless random walk with the served
    # volatility: no edge, its expected R before costs is 0).
    answered_by: str
    reason: str


def level_in_atr(field: str, price: float, close: float, atr: float, side: str) -> float:
    """A take-profit (`field` tp_price) or stop (sl_price) given as a price, in ATR multiples;
    refuses a level on the wrong side of the close for the trade."""
    favourable = 1.0 if side == "long" else -1.0
    sign = favourable if field == "tp_price" else -favourable
    distance = sign * (price - close) / atr
    if distance <= 0:
        where = "above" if sign > 0 else "below"
        raise BadParameterError(
            f"{field} {price:g} must be {where} the entry {close:g} for a {side} trade",
            field=field,
        )
    return distance


def checked_distance(field: str, value: float) -> float:
    if not (math.isfinite(value) and MIN_BARRIER_ATR <= value <= MAX_BARRIER_ATR):
        raise BadParameterError(
            f"{field} must be between {MIN_BARRIER_ATR:g} and {MAX_BARRIER_ATR:g} ATR from "
            f"the entry, got {value:g}",
            field=field,
        )
    return value


def _source(spec: FeatureSpec, barrier: Barrier) -> tuple[str, str]:
    head = spec.head.barriers if spec.head is not None else None
    if head is None:
        return FALLBACK, "this model set was exported before the barrier model: retrain it"
    served = head.source(barrier.side, barrier.horizon, barrier.tp_atr, barrier.sl_atr)
    if served == MODEL:
        return MODEL, "the path model beat the driftless fallback's Brier score in this cell"
    return FALLBACK, "no evidence out of sample that the path model beats a driftless walk here"


class BarrierPath(NamedTuple):
    """Per row, what the path model reads for one barrier: the drift in the trade's favour, the
    sd over the horizon, the path's shape, and who answers (model or fallback) and why."""

    drift: F64
    scale: F64
    shape: PathShape
    answered_by: str
    reason: str


def barrier_path(
    spec: FeatureSpec, barrier: Barrier, ranges: F64, p_long: npt.ArrayLike, p_short: npt.ArrayLike
) -> BarrierPath:
    """The path for rows of served numbers: `ranges` (n, 2H) in ATR units, the served P(long)
    and P(short); the path model where its gate let it through, else the driftless fallback
    with the served volatility."""
    k = barrier.horizon
    up, down = ranges[:, 2 * k], ranges[:, 2 * k + 1]
    scale = fallback_scale(up, down)
    drift, shape = np.zeros_like(scale), BROWNIAN
    answered_by, reason = _source(spec, barrier)
    if answered_by == MODEL and spec.head is not None and spec.head.barriers is not None:
        inputs = drift_inputs(up, down, p_long, p_short)
        drift, scale = spec.head.barriers.path(k, scale, inputs)
        shape = spec.head.barriers.shape(k)
    return BarrierPath(side_drift(barrier.side, drift), scale, shape, answered_by, reason)


class ServedBarrier(NamedTuple):
    """Per row, for one barrier: the outcomes, the expected R net of costs, and who answered."""

    odds: BarrierOdds
    expected_r: F64  # net of `cost_r`
    answered_by: str
    reason: str


def served_barrier(
    spec: FeatureSpec,
    barrier: Barrier,
    ranges: F64,
    p_long: npt.ArrayLike,
    p_short: npt.ArrayLike,
    horizon_bars: npt.ArrayLike,
    cost_r: npt.ArrayLike,
) -> ServedBarrier:
    """The barrier's outcomes for rows of served numbers (see barrier_path)."""
    path = barrier_path(spec, barrier, ranges, p_long, p_short)
    odds = barrier_odds(
        barrier.tp_atr, barrier.sl_atr, path.drift, path.scale, horizon_bars, shape=path.shape
    )
    net: F64 = odds.expected_r - np.asarray(cost_r, np.float64)
    return ServedBarrier(odds, net, path.answered_by, path.reason)


class BarrierQuestion(NamedTuple):
    """One served row's barrier, ready to evaluate: its path, the horizon's bars and the cost."""

    barrier: Barrier
    path: BarrierPath  # of one row
    horizon: str
    horizon_bars: int
    close: float
    atr: float
    cost_r: float


def barrier_question(
    spec: FeatureSpec,
    ranges: F64,
    p_long: float,
    p_short: float,
    close: float,
    atr: float,
    horizon_bars: list[int],
    barrier: Barrier,
    round_trip: float,
) -> BarrierQuestion:
    """The barrier for one served row: `ranges` is its (2H,) served range in ATR units."""
    k = barrier.horizon
    return BarrierQuestion(
        barrier,
        barrier_path(spec, barrier, ranges[np.newaxis], p_long, p_short),
        spec.horizons[k],
        horizon_bars[k],
        close,
        atr,
        float(cost_in_r(round_trip, close, atr, barrier.sl_atr)),
    )


def _answer(question: BarrierQuestion, odds: BarrierOdds, row: int) -> BarrierOutcome:
    """The outcome of `question` from row `row` of the odds evaluated for it."""
    barrier, path = question.barrier, question.path
    sign = 1.0 if barrier.side == SIDES[0] else -1.0
    return BarrierOutcome(
        side=barrier.side,
        horizon=question.horizon,
        horizon_bars=question.horizon_bars,
        tp_atr=barrier.tp_atr,
        sl_atr=barrier.sl_atr,
        take_profit=question.close + sign * barrier.tp_atr * question.atr,
        stop_loss=question.close - sign * barrier.sl_atr * question.atr,
        p_tp_first=float(odds.p_tp[row]),
        p_sl_first=float(odds.p_sl[row]),
        p_neither=float(odds.p_neither[row]),
        expected_bars=float(odds.expected_bars[row]),
        expected_r=float(odds.expected_r[row]) - question.cost_r,
        cost_r=question.cost_r,
        answered_by=path.answered_by,
        reason=path.reason,
    )


def evaluate_together(questions: list[BarrierQuestion]) -> list[BarrierOutcome]:
    """Questions of one path shape in one barrier_odds call (signals/barrier_batch.py groups
    the questions of one event-loop turn by shape)."""
    odds = barrier_odds(
        [q.barrier.tp_atr for q in questions],
        [q.barrier.sl_atr for q in questions],
        np.concatenate([q.path.drift for q in questions]),
        np.concatenate([q.path.scale for q in questions]),
        [q.horizon_bars for q in questions],
        shape=questions[0].path.shape,
    )
    return [_answer(q, odds, row) for row, q in enumerate(questions)]


def evaluate(question: BarrierQuestion) -> BarrierOutcome:
    """One question on its own."""
    return evaluate_together([question])[0]


def barrier_signal_inputs(
    spec: FeatureSpec,
    horizon: int,
    tp_atr: float,
    sl_atr: float,
    side: npt.ArrayLike,
    ranges: F64,
    p_long: F64,
    p_short: F64,
    horizon_bars: int,
    cost_r: F64,
) -> tuple[F64, F64]:
    """(P(take-profit first), expected R net of costs) per bar for the side each bar trades
    (+1 long, -1 short; 0: not computed, NaN): what a signal on the caller's levels is decided
    on."""
    sides = np.asarray(side)
    p_tp, edge = np.full(len(ranges), np.nan), np.full(len(ranges), np.nan)
    for name, sign in (("long", 1), ("short", -1)):
        rows = sides == sign
        if rows.any():
            served = served_barrier(
                spec,
                Barrier(name, horizon, tp_atr, sl_atr),
                ranges[rows],
                p_long[rows],
                p_short[rows],
                horizon_bars,
                cost_r[rows],
            )
            p_tp[rows], edge[rows] = served.odds.p_tp, served.expected_r
    return p_tp, edge
