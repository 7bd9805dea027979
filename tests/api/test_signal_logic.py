"""Signal construction on hand-made model outputs."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.signals.logic import build_signal, evaluate_signals
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
    cost_r=0.02,
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


def test_expected_r_is_the_win_probability_against_a_full_stop_net_of_costs() -> None:
    signal = build_signal(direction=1.0, strategy=STRATEGIES["balanced"], **BASE)  # type: ignore[arg-type]
    assert signal.expected_r == pytest.approx(0.6 * 1.5 - 0.4 - 0.02)
    assert signal.cost_r == pytest.approx(0.02)
    assert signal.edge


def test_a_base_rate_probability_has_no_edge_and_does_not_trade() -> None:
    """P(win) 0.40 at 1.5:1 is worth exactly 0 R before costs: with costs there is no edge."""
    inputs = {**BASE, "confidence": 0.40, "p_long": 0.40}
    for name in STRATEGIES:
        signal = build_signal(direction=1.0, strategy=STRATEGIES[name], **inputs)  # type: ignore[arg-type]
        assert signal.action == "none"
        assert not signal.edge
        assert signal.expected_r == pytest.approx(-0.02)
        assert signal.reason.startswith("no edge: expected R -0.020 < ")


@pytest.mark.parametrize("name", sorted(STRATEGIES))
def test_vectorised_and_scalar_rules_agree(name: str) -> None:
    strategy = STRATEGIES[name]
    rng = np.random.default_rng(7)
    n = 2000
    inputs = {
        "direction": rng.choice([-1.0, -0.2, 0.0, 0.3, 1.0], n),
        "confidence": rng.uniform(0.2, 0.8, n),
        "p_long": rng.uniform(0.2, 0.8, n),
        "p_short": rng.uniform(0.2, 0.8, n),
        "up_atr": rng.uniform(0.0, 3.0, n),
        "down_atr": rng.uniform(0.0, 3.0, n),
    }
    cost_r = rng.uniform(0.0, 0.1, n)
    # Values exactly on the thresholds, and missing ones, must be decided the same way too.
    on_edge = (1.0 + strategy.min_expected_r) / 2.5  # expected R = the minimum at 1.5:1, no cost
    inputs["confidence"][:100] = on_edge
    inputs["p_long"][100:200] = on_edge
    cost_r[:200] = 0.0
    inputs["up_atr"][200:300] = strategy.min_range_tp_ratio * 1.5
    inputs["down_atr"][300:350] = np.nan
    inputs["confidence"][350:400] = np.nan
    for tp_atr in (1.5, 0.0):
        vectorised = evaluate_signals(
            **inputs, tp_atr=tp_atr, sl_atr=1.0, cost_r=cost_r, strategy=strategy
        )
        for i in range(n):
            signal = build_signal(
                close=100.0,
                atr=2.0,
                tp_atr=tp_atr,
                sl_atr=1.0,
                cost_r=float(cost_r[i]),
                horizon="intraday",
                horizon_bars=48,
                strategy=strategy,
                **{key: float(values[i]) for key, values in inputs.items()},
            )
            assert signal.passed_filter == vectorised.passed[i]
            assert signal.direction == ("long" if vectorised.side[i] == 1 else "short")
            assert signal.confidence == pytest.approx(vectorised.score[i], nan_ok=True)
            expected = {1: "buy", -1: "sell", 0: "none"}[int(vectorised.trade_side[i])]
            assert signal.action == expected


def test_missing_model_output_never_passes() -> None:
    inputs = {**BASE, "confidence": float("nan")}
    signal = build_signal(direction=1.0, strategy=STRATEGIES["balanced"], **inputs)  # type: ignore[arg-type]
    assert (signal.action, signal.passed_filter) == ("none", False)
    assert "confidence nan" in signal.reason
