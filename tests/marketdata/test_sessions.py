"""Trading weeks derived from bars: horizons end after the h-th trading bar, closed hours
skipped."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd

from orchestrator.demo.generator import generate_bars
from orchestrator.marketdata.sessions import infer_week
from orchestrator.marketdata.timeframes import Timeframe

M5 = Timeframe.M5


def test_a_24_7_market_is_open_in_every_slot() -> None:
    bars = generate_bars("BTCUSD", days=21, seed=1)
    week = infer_week(pd.DatetimeIndex(bars.index), Timeframe.M5)
    assert week.always_open
    assert week.bars_per_week == 7 * 288
    start = datetime(2025, 6, 6, 23, 55, tzinfo=UTC)  # a Friday night: no closed hours
    assert week.bar_close(start, 6) == datetime(2025, 6, 7, 0, 30, tzinfo=UTC)


def test_an_exchange_session_skips_the_night_and_the_weekend() -> None:
    bars = generate_bars("ESDEMO", days=35, seed=1)
    week = infer_week(pd.DatetimeIndex(bars.index), Timeframe.M5)
    assert week.bars_per_week == 5 * 78
    last_friday_bar = datetime(2025, 6, 6, 20, 55, tzinfo=UTC)  # the session's last bar
    # 6 bars on: the first 6 bars of Monday's session, 14:30 .. 14:55, closing at 15:00.
    assert week.bar_close(last_friday_bar, 6) == datetime(2025, 6, 9, 15, 0, tzinfo=UTC)
    # One session (78 bars) after Monday's open bar ends with Monday's close... of Tuesday.
    monday_open = datetime(2025, 6, 9, 14, 30, tzinfo=UTC)
    assert week.bar_close(monday_open, 78) == datetime(2025, 6, 10, 14, 35, tzinfo=UTC)


def test_a_holiday_does_not_close_a_slot() -> None:
    bars = generate_bars("ESDEMO", days=35, seed=1)
    index = pd.DatetimeIndex(bars.index)
    holiday = index[index.normalize() != pd.Timestamp("2025-06-12", tz="UTC")]
    assert infer_week(holiday, Timeframe.M5).bars_per_week == 5 * 78


def test_fx_closes_from_friday_22h_to_sunday_22h() -> None:
    bars = generate_bars("EURUSD", days=28, seed=1)
    week = infer_week(pd.DatetimeIndex(bars.index), Timeframe.M5)
    friday_last = datetime(2025, 6, 6, 21, 55, tzinfo=UTC)
    assert week.bar_close(friday_last, 1) == datetime(2025, 6, 8, 22, 5, tzinfo=UTC)


def _weekday_hours(first_minute: int, last_minute: int, days: int = 28) -> pd.DatetimeIndex:
    """5m bars opening between `first_minute` and `last_minute` (minutes of the UTC day,
    last excluded) on weekdays."""
    index = pd.date_range("2025-06-02", periods=days * 288, freq="5min", tz="UTC")
    minute = index.hour * 60 + index.minute
    return index[(minute >= first_minute) & (minute < last_minute) & (index.dayofweek < 5)]


def test_sessions_are_trading_days_whatever_the_calendar() -> None:
    # (symbol, sessions a week, bars a session) for the demo's four calendars.
    expected = {"BTCUSD": (7, 288), "EURUSD": (5, 288), "XAUUSD": (5, 276), "ESDEMO": (5, 78)}
    for symbol, (sessions, bars) in expected.items():
        week = infer_week(pd.DatetimeIndex(generate_bars(symbol, days=35, seed=1).index), M5)
        assert (week.sessions_per_week, week.session_bars) == (sessions, bars), symbol


def test_a_lunch_break_stays_inside_the_session() -> None:
    morning = _weekday_hours(0, 150)  # 00:00-02:30 UTC
    afternoon = _weekday_hours(210, 360)  # 03:30-06:00 UTC: a one-hour lunch between
    week = infer_week(morning.union(afternoon), M5)
    assert week.sessions_per_week == 5
    assert week.session_bars == (150 + 150) // 5


def test_an_empty_week_has_no_sessions() -> None:
    week = infer_week(pd.DatetimeIndex([], tz="UTC"), M5)
    assert (week.sessions_per_week, week.session_bars) == (0, 0)
