"""Conventional indicators: each one's declared warm-up settles it even at its widest parameters
(the answer on its warm-up tail equals the answer on the whole history), OBV does not depend on
what else is asked, value names carry inline parameters, and short series answer NaN."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.demo.generator import generate_bars
from orchestrator.marketdata.indicators import (
    INDICATORS,
    IndicatorCall,
    Ohlcv,
    compute_indicators,
    required_bars,
)

BAR_S = 300
COUNT = 100


@pytest.fixture(scope="module")
def bars() -> pd.DataFrame:
    return generate_bars("BTCUSD", days=40, seed=3)  # 11,520 5m bars


def _call(name: str, *, inline: bool = False, **params: float) -> IndicatorCall:
    return _with(name, params, inline=inline)


def _with(name: str, params: dict[str, float], *, inline: bool = False) -> IndicatorCall:
    indicator = INDICATORS[name]
    chosen = {p.name: params.get(p.name, p.default) for p in indicator.params}
    return IndicatorCall(indicator, chosen, inline)


def _widest(name: str) -> IndicatorCall:
    """Every parameter at its maximum (macd: fast just below slow)."""
    params = {p.name: p.maximum for p in INDICATORS[name].params}
    if name == "macd":
        params["fast"] = params["slow"] - 1
    return _with(name, params)


@pytest.mark.parametrize("name", list(INDICATORS))
@pytest.mark.parametrize("widest", [False, True])
def test_the_warmup_settles_the_first_answered_value(
    bars: pd.DataFrame, name: str, widest: bool
) -> None:
    call = _widest(name) if widest else _call(name)
    needed = required_bars([call], COUNT, BAR_S)
    assert needed < len(bars), "the test needs more history than the warm-up"
    answered = compute_indicators(bars, [call], COUNT, BAR_S)
    whole = call.indicator.compute(Ohlcv.of(bars), call.params)
    price = float(bars["close"].median())
    for key, full in zip(call.keys, whole, strict=True):
        got = answered[key]
        assert got.shape == (COUNT,)
        assert np.isfinite(got).all(), key
        if name != "obv":  # a running sum from the first answered bar, by definition
            np.testing.assert_allclose(got, full[-COUNT:], rtol=1e-7, atol=1e-9 * price)


def test_obv_starts_at_the_first_answered_bar_whatever_else_is_asked(bars: pd.DataFrame) -> None:
    alone = compute_indicators(bars, [_call("obv")], COUNT, BAR_S)["obv"]
    with_adx = compute_indicators(bars, [_call("adx"), _call("obv")], COUNT, BAR_S)["obv"]
    np.testing.assert_array_equal(alone, with_adx)
    assert alone[0] == bars["volume"].iloc[-COUNT]


def test_vwap_restarts_each_utc_day(bars: pd.DataFrame) -> None:
    two_days = bars.iloc[-288 * 2 :]
    vwap = compute_indicators(two_days, [_call("vwap")], len(two_days), BAR_S)["vwap"]
    days = pd.DatetimeIndex(two_days.index).normalize()
    first = days != pd.Series(days).shift().to_numpy()
    typical = (two_days["high"] + two_days["low"] + two_days["close"]) / 3
    np.testing.assert_allclose(vwap[first], typical[first].to_numpy())


def test_value_names_carry_inline_parameters() -> None:
    assert _call("rsi").keys == ("rsi",)
    assert _call("rsi", inline=True, length=21).keys == ("rsi_21",)
    bands = _call("bbands", inline=True, length=20, std=2.5)
    assert bands.keys == ("bb_upper_20_2.5", "bb_middle_20_2.5", "bb_lower_20_2.5")
    assert _call("bbands", inline=True, std=2.0).keys[0] == "bb_upper_20_2"
    assert _call("macd", inline=True, fast=8).keys[2] == "macd_hist_8_26_9"


@pytest.mark.parametrize("size", [0, 3])
def test_a_short_series_answers_nan(bars: pd.DataFrame, size: int) -> None:
    calls = [_call(name) for name in INDICATORS]
    values = compute_indicators(bars.iloc[:size], calls, COUNT, BAR_S)
    for key in ("rsi", "macd_hist", "bb_lower", "adx", "stoch_d"):
        assert values[key].shape == (size,)
        assert np.isnan(values[key]).all(), key
