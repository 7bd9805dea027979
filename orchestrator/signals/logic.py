"""One rule from model outputs to a signal, so live serving and backtests cannot diverge: the API's
scalar build_signal and the backtester's vectorised evaluate_signals both run _check."""

from __future__ import annotations

from typing import NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt

from orchestrator.signals.costs import expected_r
from orchestrator.signals.strategies import Strategy

F64 = npt.NDArray[np.float64]
Bool = npt.NDArray[np.bool_]


class Signal(msgspec.Struct):
    action: str  # "buy", "sell" or "none" (filtered out)
    direction: str  # the models' side, even when filtered: "long" / "short"
    entry: float  # reference entry: the latest close (fills at the next bar's open)
    take_profit: float
    stop_loss: float
    risk_reward: float
    # The P(win) the edge is computed from; on the caller's levels, P(take-profit first).
    confidence: float
    # P(win) x TP/SL - (1 - P(win)) - costs, in R (a lower bound); on the caller's levels the
    # barrier model's expected R net of costs (neither level reached counts at its value).
    expected_r: float
    cost_r: float  # the round trip's fees and slippage in R
    edge: bool  # expected_r reaches the strategy's minimum: False is "no edge"
    horizon: str
    horizon_bars: int
    passed_filter: bool
    reason: str


class SignalArrays(NamedTuple):
    side: npt.NDArray[np.int8]  # the models' side, even when filtered: +1 long, -1 short
    score: F64  # the P(win) the filter used (the served confidence, else the side's classifier)
    passed: Bool
    expected_r: F64

    @property
    def trade_side(self) -> npt.NDArray[np.int8]:
        """side where the filter passed, else 0: the backtester's input."""
        return np.where(self.passed, self.side, 0).astype(np.int8)


class BarrierEdge(NamedTuple):
    """A signal on the caller's levels: P(take-profit first) is the score and the barrier
    model's expected R (net of costs) the edge, instead of the classifiers' P(win) for the
    models' own levels and its lower-bound R (signals/barriers.py)."""

    p_tp: npt.ArrayLike
    expected_r: npt.ArrayLike


class _Checks(NamedTuple):
    long: Bool
    score: F64
    toward_tp: F64  # predicted move toward the take-profit, in ATR
    range_ratio: F64  # toward_tp / tp_atr
    expected_r: F64
    confident: Bool
    reaches: Bool
    edge: Bool


def _check(
    direction: npt.ArrayLike,
    confidence: npt.ArrayLike,
    p_long: npt.ArrayLike,
    p_short: npt.ArrayLike,
    up_atr: npt.ArrayLike,
    down_atr: npt.ArrayLike,
    tp_atr: float,
    sl_atr: float,
    cost_r: npt.ArrayLike,
    strategy: Strategy,
    barrier: BarrierEdge | None = None,
) -> _Checks:
    """The filter rule itself. Checks are written as `>=`, so NaN inputs never pass."""
    values = (direction, confidence, p_long, p_short, up_atr, down_atr, cost_r)
    d, conf, pl, ps, up, down, cost = np.broadcast_arrays(
        *(np.asarray(v, np.float64) for v in values)
    )
    long = d > 0
    score = np.array(conf if strategy.use_metamodel else np.where(long, pl, ps), np.float64)
    toward_tp = np.where(long, up, down)
    range_ratio = toward_tp / tp_atr if tp_atr > 0 else np.zeros_like(toward_tp)
    edge_r = expected_r(score, tp_atr, sl_atr, cost) if sl_atr > 0 else np.full_like(score, np.nan)
    if barrier is not None:  # the caller's levels: the barrier model's numbers decide
        score = np.broadcast_to(np.asarray(barrier.p_tp, np.float64), score.shape).copy()
        edge_r = np.broadcast_to(np.asarray(barrier.expected_r, np.float64), score.shape).copy()
    return _Checks(
        long=long,
        score=score,
        toward_tp=toward_tp,
        range_ratio=range_ratio,
        expected_r=edge_r,
        confident=score >= strategy.min_confidence,
        reaches=range_ratio >= strategy.min_range_tp_ratio,
        edge=edge_r >= strategy.min_expected_r,
    )


def evaluate_signals(
    direction: npt.ArrayLike,
    confidence: npt.ArrayLike,
    p_long: npt.ArrayLike,
    p_short: npt.ArrayLike,
    up_atr: npt.ArrayLike,
    down_atr: npt.ArrayLike,
    *,
    tp_atr: float,
    sl_atr: float,
    cost_r: npt.ArrayLike,
    strategy: Strategy,
    barrier: BarrierEdge | None = None,
) -> SignalArrays:
    """build_signal's decision for many bars at once (inputs broadcast together)."""
    checks = _check(
        direction,
        confidence,
        p_long,
        p_short,
        up_atr,
        down_atr,
        tp_atr,
        sl_atr,
        cost_r,
        strategy,
        barrier,
    )
    side = np.where(checks.long, 1, -1).astype(np.int8)
    passed = checks.edge & checks.confident & checks.reaches
    return SignalArrays(side, checks.score, passed, checks.expected_r)


def build_signal(
    *,
    close: float,
    atr: float,
    direction: float,
    confidence: float,
    p_long: float,
    p_short: float,
    up_atr: float,
    down_atr: float,
    tp_atr: float,
    sl_atr: float,
    cost_r: float,
    horizon: str,
    horizon_bars: int,
    strategy: Strategy,
    barrier: BarrierEdge | None = None,
) -> Signal:
    checks = _check(
        direction,
        confidence,
        p_long,
        p_short,
        up_atr,
        down_atr,
        tp_atr,
        sl_atr,
        cost_r,
        strategy,
        barrier,
    )
    long = bool(checks.long)
    score, toward_tp = float(checks.score), float(checks.toward_tp)
    edge_r = float(checks.expected_r)
    sign = 1.0 if long else -1.0
    take_profit = close + sign * tp_atr * atr
    stop_loss = close - sign * sl_atr * atr
    reasons = []
    if not checks.edge:
        p_name = "P(win)" if barrier is None else "P(take-profit first)"
        reasons.append(
            f"no edge: expected R {edge_r:+.3f} < {strategy.min_expected_r:+.2f} "
            f"({p_name} {score:.3f} at {tp_atr / sl_atr:.2f}:1, costs {cost_r:.3f} R)"
        )
    if not checks.confident:
        reasons.append(f"confidence {score:.3f} < {strategy.min_confidence:.2f}")
    if not checks.reaches:
        reasons.append(
            f"predicted move {toward_tp:.2f} ATR reaches {float(checks.range_ratio):.2f} of the TP "
            f"distance (< {strategy.min_range_tp_ratio:.2f})"
        )
    passed = not reasons
    return Signal(
        action=("buy" if long else "sell") if passed else "none",
        direction="long" if long else "short",
        entry=close,
        take_profit=take_profit,
        stop_loss=stop_loss,
        risk_reward=tp_atr / sl_atr if sl_atr > 0 else 0.0,
        confidence=score,
        expected_r=edge_r,
        cost_r=float(cost_r),
        edge=bool(checks.edge),
        horizon=horizon,
        horizon_bars=horizon_bars,
        passed_filter=passed,
        reason="; ".join(reasons) or f"passes {strategy.name}",
    )
