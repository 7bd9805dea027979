"""Resampling values on hand-made bars: exact OHLCV aggregation on UTC boundaries."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from orchestrator.marketdata.resample import resample_bars
from orchestrator.marketdata.timeframes import Timeframe


def _five_minute_bars(start: str, count: int) -> pd.DataFrame:
    index = pd.date_range(start, periods=count, freq="5min", tz="UTC", name="ts")
    i = np.arange(count, dtype=float)
    return pd.DataFrame(
        {
            "open": 100 + i,
            "high": 101 + i + (i % 3),
            "low": 99 + i - (i % 2),
            "close": 100.5 + i,
            "volume": 10 + i,
        },
        index=index,
    )


def test_one_hour_bar_from_twelve_five_minute_bars() -> None:
    bars = _five_minute_bars("2024-03-01 10:00", 24)
    hourly = resample_bars(bars, Timeframe.H1)
    assert list(hourly.index) == [
        pd.Timestamp("2024-03-01 10:00", tz="UTC"),
        pd.Timestamp("2024-03-01 11:00", tz="UTC"),
    ]
    first = hourly.iloc[0]
    assert first["open"] == 100.0
    assert first["high"] == max(101 + i + (i % 3) for i in range(12))
    assert first["low"] == min(99 + i - (i % 2) for i in range(12))
    assert first["close"] == 100.5 + 11
    assert first["volume"] == sum(10 + i for i in range(12))


def test_four_hour_buckets_align_to_utc_midnight() -> None:
    bars = _five_minute_bars("2024-03-01 02:55", 60)  # 02:55 .. 07:50
    four_hourly = resample_bars(bars, Timeframe.H4)
    assert [ts.hour for ts in four_hourly.index] == [0, 4]
    assert four_hourly.iloc[0]["open"] == 100.0  # the 02:55 bar opens the 00:00 bucket
    assert four_hourly.iloc[1]["open"] == 100.0 + 13  # 04:00 is the 14th bar


def test_daily_buckets_skip_empty_days() -> None:
    friday = _five_minute_bars("2024-03-01 22:00", 12)
    monday = _five_minute_bars("2024-03-04 00:00", 12)
    daily = resample_bars(pd.concat([friday, monday]), Timeframe.D1)
    assert [str(ts.date()) for ts in daily.index] == ["2024-03-01", "2024-03-04"]


@pytest.mark.parametrize(("timeframe", "minutes"), [(Timeframe.M15, 15), (Timeframe.H1, 60)])
def test_complete_only_drops_the_forming_bucket(timeframe: Timeframe, minutes: int) -> None:
    per_bucket = minutes // 5
    bars = _five_minute_bars("2024-03-01 00:00", per_bucket * 3 + 1)
    everything = resample_bars(bars, timeframe)
    complete = resample_bars(bars, timeframe, complete_only=True, base=Timeframe.M5)
    assert len(everything) == 4
    assert len(complete) == 3


def _daily_bars(start: str, end: str) -> pd.DataFrame:
    index = pd.date_range(start, end, freq="1D", tz="UTC", name="ts")
    i = np.arange(len(index), dtype=float)
    return pd.DataFrame(
        {
            "open": 100 + i,
            "high": 110 + i + (i % 5),
            "low": 90 + i - (i % 4),
            "close": 101 + i,
            "volume": 1 + i,
        },
        index=index,
    )


def _expected(bars: pd.DataFrame, start: str, end: str) -> list[float]:
    """OHLCV of the bars whose open time lies in [start, end)."""
    inside = bars[(bars.index >= pd.Timestamp(start, tz="UTC")) & (bars.index < end)]
    return [
        inside["open"].iloc[0],
        inside["high"].max(),
        inside["low"].min(),
        inside["close"].iloc[-1],
        inside["volume"].sum(),
    ]


def test_daily_to_weekly_buckets_open_on_monday() -> None:
    bars = _daily_bars("2024-02-28", "2024-03-17")  # Wednesday .. Sunday
    weekly = resample_bars(bars, Timeframe.W1)
    assert [str(ts.date()) for ts in weekly.index] == ["2024-02-26", "2024-03-04", "2024-03-11"]
    assert all(ts.day_name() == "Monday" for ts in weekly.index)
    columns = ["open", "high", "low", "close", "volume"]
    assert weekly.iloc[0][columns].tolist() == _expected(bars, "2024-02-26", "2024-03-04")
    assert weekly.iloc[1][columns].tolist() == _expected(bars, "2024-03-04", "2024-03-11")
    assert weekly.iloc[1]["volume"] == sum(1 + i for i in range(5, 12))  # Mon 4th .. Sun 10th


def test_daily_to_monthly_buckets_open_on_the_first() -> None:
    bars = _daily_bars("2023-12-20", "2024-03-31")
    monthly = resample_bars(bars, Timeframe.MO1)
    assert [str(ts.date()) for ts in monthly.index] == [
        "2023-12-01",
        "2024-01-01",
        "2024-02-01",
        "2024-03-01",
    ]
    columns = ["open", "high", "low", "close", "volume"]
    for opens, closes in [("2024-01-01", "2024-02-01"), ("2024-02-01", "2024-03-01")]:
        got = list(monthly.loc[pd.Timestamp(opens, tz="UTC"), columns])
        assert got == _expected(bars, opens, closes)
    assert monthly.loc[pd.Timestamp("2024-02-01", tz="UTC"), "volume"] == sum(
        1 + i
        for i in range(43, 43 + 29)  # 29 days of a leap-year February
    )


@pytest.mark.parametrize(("end", "months"), [("2024-02-28", 1), ("2024-02-29", 2)])
def test_complete_only_knows_how_long_a_month_is(end: str, months: int) -> None:
    bars = _daily_bars("2024-01-01", end)
    monthly = resample_bars(bars, Timeframe.MO1, complete_only=True, base=Timeframe.D1)
    assert len(monthly) == months
