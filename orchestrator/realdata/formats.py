"""Parsers for the CSV layouts the packaged data sets use, each into the frame the ingest
pipeline validates (see orchestrator/ingest/readers.py): line, raw_ts, ts (UTC), open, high, low,
close, volume. A value that does not parse becomes NaT/NaN, so validation rejects its row with
the line number and reason instead of the whole file failing.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from enum import StrEnum

import numpy as np
import pandas as pd

from orchestrator.ingest.readers import InputFileError


class Layout(StrEnum):
    # CryptoDataDownload export: a notice line, then date,symbol,open,high,low,close,volume_<base>,
    # volume (quote currency); newest bar first; hours written as "2017-07-01 11-AM" (UTC).
    CRYPTODATADOWNLOAD = "cryptodatadownload"
    # The layout of a Dukascopy export: Time,Open,High,Low,Close,Volume, "01.01.2017 22:00:00.000"
    # (day first, UTC).
    DUKASCOPY = "dukascopy"
    # The layout of a Yahoo Finance daily download: Date,Open,High,Low,Close,Adj Close,Volume,
    # dates as 1/4/1999 (month first).
    YAHOO_DAILY = "yahoo_daily"


def _bar_frame(
    table: pd.DataFrame,
    *,
    source: str,
    first_line: int,
    time_column: str,
    time_format: str,
    columns: dict[str, str],
) -> pd.DataFrame:
    """`columns` maps open/high/low/close/volume to the file's header names."""
    missing = [name for name in (time_column, *columns.values()) if name not in table.columns]
    if missing:
        raise InputFileError(
            f"{source}: missing column(s) {', '.join(missing)}; found {list(table.columns)}"
        )
    out = pd.DataFrame(index=table.index)
    out["line"] = np.arange(first_line, first_line + len(table), dtype=np.int64)
    raw_ts = table[time_column].astype(str).str.strip()
    out["raw_ts"] = raw_ts
    out["ts"] = pd.to_datetime(raw_ts, format=time_format, utc=True, errors="coerce")
    for canonical, header in columns.items():
        out[canonical] = pd.to_numeric(table[header], errors="coerce").astype(np.float64)
    return out.sort_values("ts", kind="stable").reset_index(drop=True)


def _read(data: bytes, source: str, *, skip_rows: int, time_column: str) -> pd.DataFrame:
    try:
        return pd.read_csv(
            io.BytesIO(data),
            skiprows=skip_rows,
            dtype={time_column: str},
            keep_default_na=False,
            na_values=[""],
            skipinitialspace=True,
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputFileError(f"{source}: cannot read as CSV: {exc}") from None


def parse_cryptodatadownload(data: bytes, source: str) -> pd.DataFrame:
    """Volume is taken in the base asset (volume_btc for BTCUSD), as bars elsewhere count it."""
    table = _read(data, source, skip_rows=1, time_column="date")
    base_volume = [c for c in table.columns if str(c).startswith("volume_")]
    return _bar_frame(
        table,
        source=source,
        first_line=3,  # line 1 is the notice, line 2 the header
        time_column="date",
        time_format="%Y-%m-%d %I-%p",
        columns={
            "open": "open",
            "high": "high",
            "low": "low",
            "close": "close",
            "volume": base_volume[0] if base_volume else "volume_<base asset>",
        },
    )


def parse_dukascopy(data: bytes, source: str) -> pd.DataFrame:
    table = _read(data, source, skip_rows=0, time_column="Time")
    return _bar_frame(
        table,
        source=source,
        first_line=2,
        time_column="Time",
        time_format="%d.%m.%Y %H:%M:%S.%f",
        columns={n.lower(): n for n in ("Open", "High", "Low", "Close", "Volume")},
    )


def parse_yahoo_daily(data: bytes, source: str) -> pd.DataFrame:
    """Bars at 00:00 UTC of the trading day; Close (not Adj Close) keeps OHLC consistent."""
    table = _read(data, source, skip_rows=0, time_column="Date")
    return _bar_frame(
        table,
        source=source,
        first_line=2,
        time_column="Date",
        time_format="%m/%d/%Y",
        columns={n.lower(): n for n in ("Open", "High", "Low", "Close", "Volume")},
    )


PARSERS: dict[Layout, Callable[[bytes, str], pd.DataFrame]] = {
    Layout.CRYPTODATADOWNLOAD: parse_cryptodatadownload,
    Layout.DUKASCOPY: parse_dukascopy,
    Layout.YAHOO_DAILY: parse_yahoo_daily,
}
