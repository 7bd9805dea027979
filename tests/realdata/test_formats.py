"""The three packaged CSV layouts parsed into the ingest pipeline's frame (fixtures written in
each real layout)."""

from __future__ import annotations

import pandas as pd
import pytest

from orchestrator.ingest.readers import InputFileError
from orchestrator.ingest.validate import validate_bars
from orchestrator.realdata.formats import (
    parse_cryptodatadownload,
    parse_dukascopy,
    parse_yahoo_daily,
)
from tests.realdata.index import FIXTURES

COLUMNS = ["line", "raw_ts", "ts", "open", "high", "low", "close", "volume"]


def _utc(*stamps: str) -> list[pd.Timestamp]:
    return [pd.Timestamp(s, tz="UTC") for s in stamps]


def test_cryptodatadownload_newest_first_twelve_hour_clock() -> None:
    frame = parse_cryptodatadownload((FIXTURES / "Coinbase_BTCUSD_1h.csv").read_bytes(), "cdd")
    assert list(frame.columns) == COLUMNS
    # Oldest first; 12-AM is midnight and 12-PM noon; the notice and header lines are 1 and 2.
    assert frame["ts"].iloc[:5].tolist() == _utc(
        "2018-03-01 23:00", "2018-03-02 00:00", "2018-03-02 11:00", "2018-03-02 12:00",
        "2018-03-02 13:00",
    )  # fmt: skip
    assert frame["line"].tolist() == [7, 6, 5, 4, 3, 8]
    # Volume in the base asset (volume_btc), not the quote currency.
    assert frame["volume"].iloc[:5].tolist() == [70.0, 60.5, 95.0, 120.25, 80.5]
    newest = frame.iloc[4]
    assert (newest["open"], newest["high"], newest["low"], newest["close"]) == (
        10950.5, 10990, 10920.25, 10975
    )  # fmt: skip
    unparseable = frame.iloc[5]
    assert pd.isna(unparseable["ts"])
    assert unparseable["raw_ts"] == "2018-03-01 10-XM"


def test_dukascopy_day_first_times() -> None:
    frame = parse_dukascopy((FIXTURES / "FOREX_EURUSD_1H_ASK.csv").read_bytes(), "fx")
    assert list(frame.columns) == COLUMNS
    assert frame["ts"].tolist() == _utc(
        "2017-01-13 20:00", "2017-01-13 21:00", "2017-01-15 22:00", "2017-01-15 23:00"
    )
    assert frame["line"].tolist() == [2, 3, 4, 5]
    assert frame["close"].tolist() == [1.0644, 1.06415, 1.0633, 1.06355]
    assert frame["volume"].tolist() == [2150000000.0, 1830000000.5, 95000000.0, 0.0]


def test_yahoo_daily_month_first_dates_use_close_not_adjusted() -> None:
    data = (FIXTURES / "index_daily.csv").read_bytes()
    frame = parse_yahoo_daily(data, "spx")
    assert list(frame.columns) == COLUMNS
    assert frame["ts"].tolist() == _utc("2016-02-26", "2016-02-29", "2016-03-01", "2016-12-30")
    assert frame["close"].tolist() == [1948.0, 1932.25, 1978.5, 2238.75]
    # A different adjusted close must not leak into the bars.
    adjusted = data.replace(b",1948,1948,", b",1948,1000,")
    assert parse_yahoo_daily(adjusted, "spx")["close"].iloc[0] == 1948.0


def test_validation_rejects_bad_rows_with_their_source_line() -> None:
    frame = parse_cryptodatadownload((FIXTURES / "Coinbase_BTCUSD_1h.csv").read_bytes(), "cdd")
    accepted, rejected = validate_bars(frame.assign(symbol="BTCUSD", timeframe="1h"))
    assert len(accepted) == 4
    assert dict(zip(rejected["line"], rejected["reason"], strict=True)) == {
        7: "high is below max(open, close)",
        8: "unparseable timestamp '2018-03-01 10-XM'",
    }


def test_a_file_without_the_expected_columns_says_which() -> None:
    with pytest.raises(InputFileError, match=r"missing column\(s\) High"):
        parse_dukascopy(b"Time,Open,Low,Close,Volume\n13.01.2017 20:00:00.000,1,1,1,1\n", "fx")
