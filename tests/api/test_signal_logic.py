"""Signal construction on hand-made model outputs."""

from __future__ import annotations

import pytest

from orchestrator.signals.logic import build_signal
from orchestrator.signals.strategies import STRATEGIES

BASE = dict(
    close=100.0,
    atr=2.0,
    confidence=0.6,
    p_long=0.55,
    p_short=0.3,
    up_atr=3.0,
    down_atr=1.0,
    tp_atr=1.5,
    sl_atr=1.0,
    horizon="intraday",
    horizon_bars=48,
)


def test_long_levels_and_pass() -> None:
    signal = build_signal(direction=1.0, strategy=STRATEGIES["balanced"], **BASE)  # type: ignore[arg-type]
    assert (signal.action, signal.take_profit, signal.stop_loss) == ("buy", 103.0, 98.0)
    assert signal.risk_reward == pytest.approx(1.5)


def test_short_is_filtered_when_the_range_does_not_reach_tp() -> None:
    signal = build_signal(direction=-1.0, strategy=STRATEGIES["conservative"], **BASE)  # type: ignore[arg-type]
    assert (signal.take_profit, signal.stop_loss) == (97.0, 102.0)
    assert signal.action == "none"
    assert "predicted move 1.00 ATR" in signal.reason


def test_baseline_uses_the_classifier_probability() -> None:
    signal = build_signal(direction=1.0, strategy=STRATEGIES["baseline"], **BASE)  # type: ignore[arg-type]
    assert signal.confidence == 0.55
    assert signal.action == "buy"
