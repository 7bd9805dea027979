"""Horizons in trading time: bar counts per timeframe and calendar, never collapsing."""

from __future__ import annotations

import itertools

import msgspec
import pandas as pd
import pytest

from orchestrator.demo.generator import generate_bars
from orchestrator.features.horizons import HORIZONS, Horizon, horizon_bars, week_horizon_bars
from orchestrator.features.spec import FeatureSpec
from orchestrator.marketdata.sessions import TradingWeek, infer_week
from orchestrator.marketdata.timeframes import Timeframe


def test_around_the_clock_a_session_is_a_day() -> None:
    assert horizon_bars(Timeframe.M5) == [6, 48, 288, 1440]
    assert horizon_bars(Timeframe.M15) == [2, 16, 96, 480]
    assert horizon_bars(Timeframe.H1) == [1, 4, 24, 120]


def test_an_exchange_session_shortens_swing_and_position_only() -> None:
    bars = generate_bars("ESDEMO", days=35, seed=1)
    week = infer_week(pd.DatetimeIndex(bars.index), Timeframe.M5)
    assert week_horizon_bars(week) == [6, 48, 78, 390]
    words = [
        h.describe(Timeframe.M5, n, week.session_bars)
        for h, n in zip(HORIZONS, [6, 48, 78, 390], strict=True)
    ]
    assert words == [
        "30 minutes of trading",
        "4 hours of trading",
        "one session (6.5 hours of trading)",
        "5 sessions (32.5 hours of trading)",
    ]


def test_short_sessions_make_intraday_half_a_session() -> None:
    counts = horizon_bars(Timeframe.M5, 48)  # a 4-hour session
    assert counts == [6, 24, 48, 240]
    assert Horizon.INTRADAY.describe(Timeframe.M5, 24, 48) == (
        "2 hours of trading (half a session: sessions are short)"
    )


@pytest.mark.parametrize("timeframe", list(Timeframe))
@pytest.mark.parametrize("session_bars", [None, 1, 2, 7, 48, 78, 288])
def test_horizons_never_collapse(timeframe: Timeframe, session_bars: int | None) -> None:
    counts = horizon_bars(timeframe, session_bars)
    assert all(a < b for a, b in itertools.pairwise(counts)), counts
    assert counts[0] >= 1


def test_a_set_trained_before_sessions_keeps_its_bars() -> None:
    week = TradingWeek("5m", [870 + 5 * i for i in range(78)])  # Monday's session only
    spec = FeatureSpec(
        1,
        "x",
        "5m",
        64,
        [],
        [],
        {},
        [],
        [],
        5.0,
        [h.value for h in HORIZONS],
        [6, 48, 288, 1440],
        1.5,
        1.0,
        "intraday",
    )
    assert spec.symbol_horizon_bars(week) == [6, 48, 288, 1440]
    sessions = msgspec.structs.replace(spec, horizons_in_sessions=True)
    assert sessions.symbol_horizon_bars(week) == [6, 48, 78, 390]
    assert sessions.symbol_horizon_bars(None) == [6, 48, 288, 1440]
