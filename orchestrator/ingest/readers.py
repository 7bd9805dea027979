"""Reads bar files into one normalised frame, keeping each row's source line for error reports.

Accepted headers (any case, surrounding spaces and <angle brackets> ignored):
time/timestamp/date/datetime/ts/t, open/o, high/h, low/l, close/c, volume/vol/v, and optionally
symbol/ticker and timeframe/interval. Separate Date and Time columns are joined into one time.
Without a named time column, an unnamed or index-like first column (what pandas' `to_csv()` writes
for a DatetimeIndex: an empty header, or "Unnamed: 0" / "index") is the time when it holds times.
Timestamps may be epoch seconds, milliseconds or microseconds, or ISO 8601 (with a zone; zone-less
values are taken as UTC; 2024.05.06 dates as MetaTrader writes them are read too).
CSV files may be separated by commas, semicolons (then decimal commas are read too), tabs or |.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from orchestrator.errors import BadParameterError

ALIASES: dict[str, tuple[str, ...]] = {
    "ts": ("time", "timestamp", "date", "datetime", "ts", "t", "open_time"),
    "open": ("open", "o"),
    "high": ("high", "h"),
    "low": ("low", "l"),
    "close": ("close", "c"),
    "volume": ("volume", "vol", "v"),
    "symbol": ("symbol", "ticker"),
    "timeframe": ("timeframe", "interval", "tf"),
}
_NUMBER = re.compile(r"-?\d+(\.\d*)?([eE][+-]?\d+)?")
REQUIRED = ("ts", "open", "high", "low", "close", "volume")
DELIMITERS = (",", ";", "\t", "|")
# Split date and time columns (MetaTrader, many brokers) are joined into one time column.
_DATE_PART, _TIME_PART = "date", "time"
# Headers pandas and spreadsheets give an index column: "", "Unnamed: 0", "index".
_INDEX_LIKE = re.compile(r"^(|unnamed: ?\d+|index)$")
# Epoch numbers below this (1973-03) are row counters, not times.
_MIN_EPOCH = 1e8
_DOTTED_DATE = re.compile(r"^(\d{4})\.(\d{2})\.(\d{2})")


class InputFileError(BadParameterError):
    """The file as a whole cannot be read (missing columns, unknown format; exit 2)."""

    field = "files"


def _header_key(column: object) -> str:
    return str(column).strip().strip("<>").strip().lower()


def _join_date_and_time(frame: pd.DataFrame) -> pd.DataFrame:
    """Separate Date and Time columns become one `ts` column ("2024-05-06" + " " + "13:05")."""
    keys = {_header_key(c): c for c in frame.columns}
    if _DATE_PART not in keys or _TIME_PART not in keys:
        return frame
    date, time = frame[keys[_DATE_PART]], frame[keys[_TIME_PART]]
    joined = (date.astype(str).str.strip() + " " + time.astype(str).str.strip()).where(
        date.notna() & time.notna()
    )
    rest = frame.drop(columns=[keys[_DATE_PART], keys[_TIME_PART]])
    return rest.assign(ts=joined)


def _holds_times(column: pd.Series) -> bool:
    """Whether an unnamed column's first values are times (epoch numbers too small to be
    times after 1973 are a row counter)."""
    sample = column.dropna().head(20)
    if sample.empty:
        return False
    numeric = pd.to_numeric(sample, errors="coerce")
    if numeric.notna().all() and (numeric.abs() < _MIN_EPOCH).any():
        return False
    return bool(parse_timestamps(sample.astype(str)).notna().all())


def _index_column_as_time(frame: pd.DataFrame) -> pd.DataFrame:
    """Without a named time column, an index-like first column holding times is the time."""
    if frame.columns.empty or any(_header_key(c) in ALIASES["ts"] for c in frame.columns):
        return frame
    first = frame.columns[0]
    if _INDEX_LIKE.fullmatch(_header_key(first)) and _holds_times(frame[first]):
        return frame.rename(columns={first: "ts"})
    return frame


def _rename_columns(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    lookup = {alias: canonical for canonical, names in ALIASES.items() for alias in names}
    renamed: dict[str, str] = {}
    for column in frame.columns:
        canonical = lookup.get(_header_key(column))
        if canonical is None:
            continue
        if canonical in renamed.values():
            raise InputFileError(f"{source}: more than one column maps to {canonical!r}")
        renamed[column] = canonical
    missing = [c for c in REQUIRED if c not in renamed.values()]
    if missing:
        raise InputFileError(
            f"{source}: missing column(s) {', '.join(missing)}; found {list(frame.columns)}. "
            "Expected a time column (time/timestamp/date, separate Date and Time columns, or an "
            "unnamed first column of times as pandas' to_csv() writes) and open, high, low, "
            "close, volume."
        )
    return frame[list(renamed)].rename(columns=renamed)


def sniff_delimiter(header: str) -> str:
    """The candidate delimiter that splits the header line into the most fields (comma if none
    does): a header holds names only, so no decimal commas confuse the count."""
    counts = {delimiter: header.count(delimiter) for delimiter in DELIMITERS}
    best = max(counts, key=lambda delimiter: counts[delimiter])
    return best if counts[best] else ","


def _read_csv(path: Path) -> pd.DataFrame:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        sep = sniff_delimiter(handle.readline())
    decimal = "," if sep == ";" else "."
    header = pd.read_csv(
        path, sep=sep, encoding="utf-8-sig", nrows=0, skipinitialspace=True
    ).columns
    text_names = {*ALIASES["ts"], *ALIASES["symbol"], *ALIASES["timeframe"]}
    as_text = {
        c: str
        for i, c in enumerate(header)
        if _header_key(c) in text_names or (i == 0 and _INDEX_LIKE.fullmatch(_header_key(c)))
    }
    return pd.read_csv(
        path,
        sep=sep,
        decimal=decimal,
        encoding="utf-8-sig",
        dtype=as_text,
        keep_default_na=False,
        na_values=[""],
        skipinitialspace=True,
    )


def parse_timestamps(raw: pd.Series) -> pd.Series:
    """UTC timestamps (NaT where unparseable); numbers are epoch s/ms/us chosen by magnitude."""
    present = raw.dropna()
    looks_numeric = bool(len(present)) and bool(_NUMBER.fullmatch(str(present.iloc[0]).strip()))
    if looks_numeric:
        numeric = pd.to_numeric(raw, errors="coerce")
        is_number = numeric.notna()
    else:
        numeric = pd.Series(np.nan, index=raw.index)
        is_number = pd.Series(False, index=raw.index)
    result = pd.Series(pd.NaT, index=raw.index, dtype="datetime64[ns, UTC]")
    if is_number.any():
        values = numeric[is_number].to_numpy(dtype=np.float64)
        magnitude = np.abs(values)
        scale = np.where(magnitude >= 1e14, 1e3, np.where(magnitude >= 1e11, 1e6, 1e9))
        nanos = values * scale
        finite = np.isfinite(nanos) & (np.abs(nanos) < 9.2e18)
        converted = pd.Series(pd.to_datetime(np.where(finite, nanos, 0).astype(np.int64), utc=True))
        result[is_number] = converted.where(finite).to_numpy()
    text = ~is_number & raw.notna()
    if text.any():
        texts = raw[text].astype(str).str.strip()
        if _DOTTED_DATE.match(texts.iloc[0]):
            texts = texts.str.replace(_DOTTED_DATE, r"\1-\2-\3", regex=True)
        result[text] = pd.to_datetime(texts, utc=True, format="ISO8601", errors="coerce")
    return result


def read_bar_file(path: Path, file_format: str | None = None) -> pd.DataFrame:
    """Columns ts (datetime64 UTC), open..volume (float, NaN if not a number), symbol and
    timeframe (str, when present), raw_ts (as written) and line (1-based source line/row)."""
    fmt = (file_format or path.suffix.lstrip(".")).lower()
    source = str(path)
    try:
        if fmt in {"csv", "txt"}:
            frame = _read_csv(path)
            first_line = 2  # line 1 is the header
        elif fmt in {"parquet", "pq"}:
            frame = pd.read_parquet(path)
            if not isinstance(frame.index, pd.RangeIndex):
                frame = frame.reset_index()  # a DatetimeIndex written by to_parquet()
            first_line = 1  # rows are numbered from 1
        else:
            raise InputFileError(
                f"{source}: unknown format {fmt!r}; use .csv or .parquet (or --format)"
            )
    except FileNotFoundError:
        raise InputFileError(f"{source}: no such file") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as exc:
        if isinstance(exc, InputFileError):
            raise
        raise InputFileError(f"{source}: cannot read as {fmt}: {exc}") from None
    frame = _rename_columns(_index_column_as_time(_join_date_and_time(frame)), source)
    out = pd.DataFrame(index=frame.index)
    out["line"] = np.arange(first_line, first_line + len(frame), dtype=np.int64)
    out["raw_ts"] = frame["ts"].astype(str)
    out["ts"] = parse_timestamps(frame["ts"])
    for column in ("open", "high", "low", "close", "volume"):
        out[column] = pd.to_numeric(frame[column], errors="coerce").astype(np.float64)
    for column in ("symbol", "timeframe"):
        if column in frame:
            out[column] = frame[column].astype(str)
    return out.reset_index(drop=True)
