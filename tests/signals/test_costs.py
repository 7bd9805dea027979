"""Trading costs per asset class and the expected R they are subtracted from."""

from __future__ import annotations

import numpy as np
import pytest

from orchestrator.signals.costs import (
    DEFAULT_COSTS,
    CostSettingsError,
    cost_in_r,
    costs_for,
    expected_r,
    parse_costs,
)


def test_a_round_trip_in_r_is_the_cost_over_the_stop_distance() -> None:
    # 10 bps of a 100 close is 0.10; a 1-ATR stop of 2.0 risks 2.0: 0.05 R.
    assert cost_in_r(0.001, 100.0, 2.0, 1.0) == pytest.approx(0.05)
    assert DEFAULT_COSTS["crypto"].round_trip == pytest.approx(0.001)


def test_expected_r_of_a_fair_coin_at_one_to_one_is_minus_the_costs() -> None:
    np.testing.assert_allclose(expected_r([0.5, 0.6], 1.0, 1.0, 0.03), [-0.03, 0.17])
    assert expected_r(0.4, 1.5, 1.0, 0.0) == pytest.approx(0.0)


def test_costs_can_be_overridden_per_class(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRADING_COSTS", "crypto=0.001:0.0005, forex=0:0")
    assert costs_for("crypto").round_trip == pytest.approx(0.003)
    assert costs_for("forex").round_trip == 0.0
    assert costs_for("equity") == DEFAULT_COSTS["equity"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [("crypto=abc", "must read class=fee:slippage"), ("stocks=0.1:0.1", "one of crypto")],
)
def test_unreadable_cost_settings_say_how_to_write_them(raw: str, message: str) -> None:
    with pytest.raises(CostSettingsError, match=message):
        parse_costs(raw)
