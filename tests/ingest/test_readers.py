from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from orchestrator.ingest.pipeline import IngestOptions, prepare
from orchestrator.ingest.readers import (
    InputFileError,
    parse_timestamps,
    read_bar_file,
    sniff_delimiter,
)
from orchestrator.ingest.validate import validate_bars
from orchestrator.marketdata.timeframes import Timeframe

BARS = Path(__file__).parent.parent / "fixtures" / "bars"


def test_epoch_milliseconds_and_capitalised_headers() -> None:
    frame = read_bar_file(BARS / "good_epoch_ms.csv")
    assert list(frame["ts"]) == list(pd.date_range("2024-05-06", periods=4, freq="5min", tz="UTC"))
    assert frame["open"].tolist() == [63000.5, 63020.0, 63090.75, 63001.0]
    assert frame["line"].tolist() == [2, 3, 4, 5]


def test_iso_with_zones_aliases_and_symbol_column() -> None:
    frame = read_bar_file(BARS / "good_iso_symbols.csv")
    assert frame["ts"].iloc[0] == pd.Timestamp("2024-05-06 00:00", tz="UTC")  # +02:00 converted
    assert frame["symbol"].tolist() == ["EURUSD", "EURUSD", "XAUUSD"]
    assert frame["volume"].tolist() == [150.5, 98.0, 40.0]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1714953600", "2024-05-06 00:00:00"),
        ("1714953600000", "2024-05-06 00:00:00"),
        ("1714953600000000", "2024-05-06 00:00:00"),
    ],
)
def test_epoch_units_by_magnitude(raw: str, expected: str) -> None:
    parsed = parse_timestamps(pd.Series([raw]))
    assert parsed.iloc[0] == pd.Timestamp(expected, tz="UTC")


def test_parquet_round_trip(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "time": pd.date_range("2024-05-06", periods=3, freq="1h", tz="UTC"),
            "open": [1.0, 2.0, 3.0],
            "high": [1.5, 2.5, 3.5],
            "low": [0.5, 1.5, 2.5],
            "close": [1.2, 2.2, 3.2],
            "volume": [1, 2, 3],
        }
    )
    frame.to_parquet(tmp_path / "bars.parquet")
    read = read_bar_file(tmp_path / "bars.parquet")
    assert list(read["ts"]) == list(frame["time"])
    assert read["line"].tolist() == [1, 2, 3]


def test_missing_columns_say_what_is_expected(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("when,price\n1,2\n")
    with pytest.raises(
        InputFileError, match=r"missing column\(s\) ts, open, high, low, close, volume"
    ):
        read_bar_file(path)


def _rejects(name: str) -> tuple[pd.DataFrame, dict[int, str]]:
    """A fixture read, filled in and validated: (accepted rows, {line: reason})."""
    frame = read_bar_file(BARS / name)
    prepared, _ = prepare(frame, IngestOptions(symbol="TESTUSD"), name)
    accepted, rejected = validate_bars(prepared)
    return accepted, dict(zip(rejected["line"], rejected["reason"], strict=True))


def test_pandas_to_csv_index_column_is_the_time() -> None:
    """`df.to_csv()` of a DatetimeIndex writes an empty first header."""
    frame = read_bar_file(BARS / "pandas_index.csv")
    assert list(frame["ts"]) == list(pd.date_range("2024-05-06", periods=4, freq="1h", tz="UTC"))
    assert frame["line"].tolist() == [2, 3, 4, 5]
    accepted, rejects = _rejects("pandas_index.csv")
    assert len(accepted) == 3
    assert rejects == {4: "high is below max(open, close)"}


@pytest.mark.parametrize("header", ["Unnamed: 0", "index", ""])
def test_index_like_first_column_of_times(tmp_path: Path, header: str) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(f"{header},open,high,low,close,volume\n1714953600,1,2,0.5,1.5,3\n")
    assert read_bar_file(path)["ts"].tolist() == [pd.Timestamp("2024-05-06", tz="UTC")]


def test_a_row_counter_first_column_is_not_a_time(tmp_path: Path) -> None:
    """`df.to_csv()` of a frame without a time column: the RangeIndex is no time."""
    path = tmp_path / "bars.csv"
    path.write_text(",open,high,low,close,volume\n0,1,2,0.5,1.5,3\n1,1,2,0.5,1.5,3\n")
    with pytest.raises(InputFileError, match=r"missing column\(s\) ts;.*unnamed first column"):
        read_bar_file(path)


def test_parquet_with_a_datetime_index(tmp_path: Path) -> None:
    index = pd.date_range("2024-05-06", periods=2, freq="1D", tz="UTC")
    bars = pd.DataFrame(
        {"open": [1.0, 2.0], "high": [2.0, 3.0], "low": [0.5, 1.5], "close": [1.5, 2.5]},
        index=index,
    ).assign(volume=[1.0, 2.0])
    bars.to_parquet(tmp_path / "bars.parquet")
    assert list(read_bar_file(tmp_path / "bars.parquet")["ts"]) == list(index)


def test_semicolons_and_decimal_commas() -> None:
    frame = read_bar_file(BARS / "semicolon_decimal_comma.csv")
    assert frame["open"].tolist()[:2] == [1.0751, 1.0755]
    assert frame["volume"].tolist()[:2] == [1520.0, 980.5]
    accepted, rejects = _rejects("semicolon_decimal_comma.csv")
    assert accepted["timeframe"].unique().tolist() == ["15m"]  # inferred from the spacing
    assert rejects == {5: "timestamp '2024-05-06 00:40' is not aligned to the 15m grid (UTC)"}


@pytest.mark.parametrize(
    ("name", "first", "step"),
    [
        ("date_time_columns.csv", "2024-05-06 09:30", "5min"),
        ("metatrader_export.csv", "2024-05-06 00:00", "1h"),  # tabs, <DATE>, 2024.05.06
    ],
)
def test_date_and_time_columns_are_joined(name: str, first: str, step: str) -> None:
    frame = read_bar_file(BARS / name)
    expected = pd.date_range(first, periods=3, freq=step, tz="UTC")
    assert list(frame["ts"]) == list(expected)
    assert frame["line"].tolist() == [2, 3, 4]
    accepted, rejects = _rejects(name)
    assert (len(accepted), rejects) == (3, {})


def test_a_date_without_its_time_is_reported_on_its_line(tmp_path: Path) -> None:
    path = tmp_path / "bars.csv"
    path.write_text(
        "Date;Time;Open;High;Low;Close;Volume\n"
        "2024-05-06;10:00;1;2;0,5;1,5;3\n"
        "2024-05-06;;1;2;0,5;1,5;3\n"
    )
    frame = read_bar_file(path)
    prepared, _ = prepare(frame, IngestOptions(symbol="X", timeframe=Timeframe.H1), "x")
    _, rejected = validate_bars(prepared)
    assert rejected["line"].tolist() == [3]
    assert rejected["reason"].iloc[0].startswith("unparseable timestamp")


@pytest.mark.parametrize(
    ("header", "delimiter"),
    [
        ("time,open,high,low,close,volume", ","),
        ("time;open;high;low;close;volume", ";"),
        ("<DATE>\t<TIME>\t<OPEN>", "\t"),
        ("time|open|close", "|"),
        ("time", ","),
    ],
)
def test_sniff_delimiter(header: str, delimiter: str) -> None:
    assert sniff_delimiter(header + "\n") == delimiter
