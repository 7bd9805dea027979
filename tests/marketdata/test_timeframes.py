"""Bar boundaries: the epoch grid up to 1d, the calendar for weeks (Monday) and months (1st)."""

from __future__ import annotations

from datetime import UTC, datetime

import pandas as pd
import pytest

from orchestrator.marketdata.timeframes import Timeframe, is_multiple, newest_closed


def _utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


@pytest.mark.parametrize(
    ("timeframe", "moment", "opens", "closes"),
    [
        (Timeframe.H4, "2024-02-29 13:07", "2024-02-29 12:00", "2024-02-29 16:00"),
        (Timeframe.D1, "2024-02-29 13:07", "2024-02-29 00:00", "2024-03-01 00:00"),
        # 2024-02-29 is a Thursday: its week opened on Monday the 26th.
        (Timeframe.W1, "2024-02-29 13:07", "2024-02-26 00:00", "2024-03-04 00:00"),
        (Timeframe.W1, "2024-02-26 00:00", "2024-02-26 00:00", "2024-03-04 00:00"),
        (Timeframe.W1, "2024-03-03 23:59", "2024-02-26 00:00", "2024-03-04 00:00"),  # Sunday
        (Timeframe.MO1, "2024-02-29 13:07", "2024-02-01 00:00", "2024-03-01 00:00"),  # 29 days
        (Timeframe.MO1, "2024-01-31 23:59", "2024-01-01 00:00", "2024-02-01 00:00"),  # 31 days
        (Timeframe.MO1, "2023-12-15 00:00", "2023-12-01 00:00", "2024-01-01 00:00"),  # new year
    ],
)
def test_floor_and_next_open(timeframe: Timeframe, moment: str, opens: str, closes: str) -> None:
    assert timeframe.floor(_utc(moment)) == _utc(opens)
    assert timeframe.next_open(_utc(opens)) == _utc(closes)
    index = pd.DatetimeIndex([pd.Timestamp(moment, tz="UTC")])
    assert timeframe.floor_index(index)[0] == pd.Timestamp(opens, tz="UTC")


def test_zone_less_moments_stay_zone_less() -> None:
    assert Timeframe.MO1.floor(datetime(2024, 2, 29, 13)) == datetime(2024, 2, 1)


def test_advance_counts_calendar_bars() -> None:
    assert Timeframe.MO1.advance(_utc("2024-01-01 00:00"), 13) == _utc("2025-02-01 00:00")
    assert Timeframe.MO1.advance(_utc("2024-03-01 00:00"), -1) == _utc("2024-02-01 00:00")
    assert Timeframe.W1.advance(_utc("2024-01-01 00:00"), -2) == _utc("2023-12-18 00:00")


def test_weeks_and_months_are_built_from_daily_and_intraday_bars_only() -> None:
    assert is_multiple(Timeframe.W1, Timeframe.D1)
    assert is_multiple(Timeframe.MO1, Timeframe.D1)
    assert is_multiple(Timeframe.MO1, Timeframe.M5)
    assert not is_multiple(Timeframe.MO1, Timeframe.W1)  # weeks straddle months
    assert not is_multiple(Timeframe.D1, Timeframe.W1)


@pytest.mark.parametrize(
    ("newest_daily", "closed_month"),
    [
        ("2024-02-28", "2024-01-01"),  # February's last day has not landed yet
        ("2024-02-29", "2024-02-01"),  # it has (a leap year): February is closed
        ("2024-03-01", "2024-02-01"),  # March is forming
    ],
)
def test_newest_closed_month_from_daily_bars(newest_daily: str, closed_month: str) -> None:
    newest = _utc(f"{newest_daily} 00:00")
    assert newest_closed(newest, Timeframe.D1, Timeframe.MO1) == _utc(f"{closed_month} 00:00")


def test_newest_closed_week_from_five_minute_bars() -> None:
    sunday_last = _utc("2024-03-03 23:55")
    assert newest_closed(sunday_last, Timeframe.M5, Timeframe.W1) == _utc("2024-02-26 00:00")
    sunday_earlier = _utc("2024-03-03 23:50")
    assert newest_closed(sunday_earlier, Timeframe.M5, Timeframe.W1) == _utc("2024-02-19 00:00")
