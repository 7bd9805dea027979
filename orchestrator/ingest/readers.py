"""Reads bar files into one normalised frame, keeping each row's source line for error reports.

Accepted headers (any case, surrounding spaces ignored): time/timestamp/date/datetime/ts/t,
open/o, high/h, low/l, close/c, volume/vol/v, and optionally symbol/ticker and timeframe/interval.
Timestamps may be epoch seconds, milliseconds or microseconds, or ISO 8601 (with a zone; zone-less
values are taken as UTC).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

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


class InputFileError(ValueError):
    """The file as a whole cannot be read (missing columns, unknown format)."""


def _rename_columns(frame: pd.DataFrame, source: str) -> pd.DataFrame:
    lookup = {alias: canonical for canonical, names in ALIASES.items() for alias in names}
    renamed: dict[str, str] = {}
    for column in frame.columns:
        key = str(column).strip().lower()
        canonical = lookup.get(key)
        if canonical is None:
            continue
        if canonical in renamed.values():
            raise InputFileError(f"{source}: more than one column maps to {canonical!r}")
        renamed[column] = canonical
    missing = [c for c in REQUIRED if c not in renamed.values()]
    if missing:
        raise InputFileError(
            f"{source}: missing column(s) {', '.join(missing)}; found {list(frame.columns)}. "
            "Expected a time column (time/timestamp/date) and open, high, low, close, volume."
        )
    return frame[list(renamed)].rename(columns=renamed)


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
        result[text] = pd.to_datetime(
            raw[text].astype(str).str.strip(), utc=True, format="ISO8601", errors="coerce"
        )
    return result


def read_bar_file(path: Path, file_format: str | None = None) -> pd.DataFrame:
    """Columns ts (datetime64 UTC), open..volume (float, NaN if not a number), symbol and
    timeframe (str, when present), raw_ts (as written) and line (1-based source line/row)."""
    fmt = (file_format or path.suffix.lstrip(".")).lower()
    source = str(path)
    try:
        if fmt in {"csv", "txt"}:
            header = pd.read_csv(path, nrows=0, skipinitialspace=True).columns
            as_text = {
                c: str
                for c in header
                if str(c).strip().lower()
                in ALIASES["ts"] + ALIASES["symbol"] + ALIASES["timeframe"]
            }
            frame = pd.read_csv(
                path, dtype=as_text, keep_default_na=False, na_values=[""], skipinitialspace=True
            )
            first_line = 2  # line 1 is the header
        elif fmt in {"parquet", "pq"}:
            frame = pd.read_parquet(path)
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
    frame = _rename_columns(frame, source)
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
