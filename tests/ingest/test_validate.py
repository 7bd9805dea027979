"""Timeframe inference and grid checks for weekly and monthly files (no database)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from orchestrator.ingest.pipeline import IngestOptions, infer_timeframe, prepare
from orchestrator.ingest.readers import read_bar_file
from orchestrator.ingest.validate import validate_bars
from orchestrator.marketdata.timeframes import Timeframe

BARS = Path(__file__).parent.parent / "fixtures" / "bars"


@pytest.mark.parametrize(
    ("name", "timeframe"), [("weekly.csv", Timeframe.W1), ("monthly.csv", Timeframe.MO1)]
)
def test_weekly_and_monthly_files_are_inferred_and_valid(name: str, timeframe: Timeframe) -> None:
    frame = read_bar_file(BARS / name)
    assert infer_timeframe(frame["ts"]) is timeframe
    prepared, inferred = prepare(frame, IngestOptions(symbol="BTCUSD"), name)
    accepted, rejected = validate_bars(prepared)
    assert inferred == timeframe.value
    assert (len(accepted), len(rejected)) == (len(frame), 0)


@pytest.mark.parametrize(
    "months",
    [["2024-02-01", "2024-03-01"], ["2023-04-01", "2023-05-01", "2023-06-01"]],  # 29, 30+31
)
def test_any_month_length_is_a_month(months: list[str]) -> None:
    assert infer_timeframe(pd.Series(pd.to_datetime(months, utc=True))) is Timeframe.MO1


def test_a_spacing_that_is_no_timeframe_infers_none() -> None:
    ts = pd.Series(pd.date_range("2024-01-01", periods=5, freq="2D", tz="UTC"))
    assert infer_timeframe(ts) is None


def _frame(timeframe: str, times: list[str]) -> pd.DataFrame:
    n = len(times)
    return pd.DataFrame(
        {
            "line": range(2, n + 2),
            "raw_ts": times,
            "ts": pd.to_datetime(times, utc=True, format="ISO8601"),
            "open": [1.0] * n,
            "high": [2.0] * n,
            "low": [0.5] * n,
            "close": [1.5] * n,
            "volume": [3.0] * n,
            "symbol": ["BTCUSD"] * n,
            "timeframe": [timeframe] * n,
        }
    )


def test_weeks_open_on_monday_and_months_on_the_first() -> None:
    weekly = _frame("1w", ["2024-01-01", "2024-01-07", "2024-01-15 00:00:01"])
    _, rejected = validate_bars(weekly)
    grid = "is not aligned to the 1w grid (weeks open on Monday 00:00 UTC)"
    assert dict(zip(rejected["line"], rejected["reason"], strict=True)) == {
        3: f"timestamp '2024-01-07' {grid}",  # a Sunday
        4: f"timestamp '2024-01-15 00:00:01' {grid}",
    }
    monthly = _frame("1mo", ["2024-01-01", "2024-02-02", "2024-03-01"])
    _, rejected = validate_bars(monthly)
    assert rejected["line"].tolist() == [3]
    assert rejected["reason"].iloc[0] == (
        "timestamp '2024-02-02' is not aligned to the 1mo grid (months open on the 1st 00:00 UTC)"
    )
