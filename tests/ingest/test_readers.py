from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from orchestrator.ingest.readers import InputFileError, parse_timestamps, read_bar_file

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
