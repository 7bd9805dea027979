"""One function from model outputs to a signal, so live serving and backtests cannot diverge."""

from __future__ import annotations

import msgspec

from orchestrator.signals.strategies import Strategy


class Signal(msgspec.Struct):
    action: str  # "buy", "sell" or "none" (filtered out)
    direction: str  # the models' side, even when filtered: "long" / "short"
    entry: float  # reference entry: the latest close (fills at the next bar's open)
    take_profit: float
    stop_loss: float
    risk_reward: float
    confidence: float
    horizon: str
    horizon_bars: int
    passed_filter: bool
    reason: str


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
    horizon: str,
    horizon_bars: int,
    strategy: Strategy,
) -> Signal:
    long = direction > 0
    sign = 1.0 if long else -1.0
    take_profit = close + sign * tp_atr * atr
    stop_loss = close - sign * sl_atr * atr
    score = confidence if strategy.use_metamodel else (p_long if long else p_short)
    toward_tp = up_atr if long else down_atr
    range_ratio = toward_tp / tp_atr if tp_atr > 0 else 0.0
    reasons = []
    if score < strategy.min_confidence:
        reasons.append(f"confidence {score:.3f} < {strategy.min_confidence:.2f}")
    if range_ratio < strategy.min_range_tp_ratio:
        reasons.append(
            f"predicted move {toward_tp:.2f} ATR reaches {range_ratio:.2f} of the TP distance "
            f"(< {strategy.min_range_tp_ratio:.2f})"
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
        horizon=horizon,
        horizon_bars=horizon_bars,
        passed_filter=passed,
        reason="; ".join(reasons) or f"passes {strategy.name}",
    )
