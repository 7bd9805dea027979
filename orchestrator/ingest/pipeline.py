"""One path from raw rows to the store for files, Polygon and demo data: fill in symbol and
timeframe, validate every row, report rejects, then write (or, with --strict, write nothing)."""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd

from orchestrator.errors import BadParameterError
from orchestrator.fileio import atomic_file
from orchestrator.ingest.validate import validate_bars
from orchestrator.ingest.writer import DEFAULT_BATCH_ROWS, write_bars
from orchestrator.marketdata.calendars import CalendarStore
from orchestrator.marketdata.db import Database, DatabaseUnavailableError
from orchestrator.marketdata.store import SymbolInfo
from orchestrator.marketdata.timeframes import DAY_S, MONTH_SPACING_S, Timeframe, parse_symbol

# Typical tick sizes for auto-registered symbols; override with --tick-size / --asset-class.
_TICK_BY_CLASS = {
    "crypto": 0.01,
    "forex": 0.00001,
    "metal": 0.01,
    "equity": 0.01,
    "index": 0.01,
    "commodity": 0.01,
}
_FIAT = {"USD", "EUR", "GBP", "JPY", "CHF", "AUD", "CAD", "NZD", "SEK", "NOK", "MXN", "ZAR"}


class IngestOptions(msgspec.Struct, frozen=True):
    symbol: str | None = None
    timeframe: Timeframe | None = None
    strict: bool = False
    batch_rows: int = DEFAULT_BATCH_ROWS
    asset_class: str | None = None
    tick_size: float | None = None
    show_progress: bool = True


class IngestReport(msgspec.Struct):
    source: str
    rows_read: int
    rows_written: int
    rejected: int
    rejects_path: str | None = None
    reasons: dict[str, int] = {}
    symbols: list[str] = []
    timeframe_inferred: str | None = None
    # When each written symbol trades, as derived from its stored bars after the write.
    calendars: dict[str, str] = {}

    @property
    def ok(self) -> bool:
        return self.rejected == 0


def guess_asset_class(symbol: str) -> str:
    if symbol[:3] in {"XAU", "XAG", "XPT", "XPD"}:
        return "metal"
    if len(symbol) == 6 and symbol[:3] in _FIAT and symbol[3:] in _FIAT:
        return "forex"
    if symbol.endswith(("USD", "USDT", "USDC", "EUR")) and len(symbol) <= 10:
        return "crypto"
    return "equity"


def infer_timeframe(ts: pd.Series) -> Timeframe | None:
    """The timeframe matching the most common spacing between consecutive bars, if any; a
    spacing of 28 to 31 days is a month."""
    seconds = ts.dropna().sort_values().astype("int64") // 10**9
    gaps = np.diff(seconds.to_numpy())
    gaps = gaps[gaps > 0]
    by_spacing = {tf.seconds: tf for tf in Timeframe}
    shortest, longest = MONTH_SPACING_S
    matched = Counter(
        Timeframe.MO1 if shortest <= gap <= longest and gap % DAY_S == 0 else by_spacing.get(gap)
        for gap in gaps.tolist()
    )
    return matched.most_common(1)[0][0] if matched else None


def write_rejects(rejected: pd.DataFrame, path: Path) -> None:
    """Atomically writes line, reason and the row as read."""
    columns = [
        "line",
        "reason",
        "raw_ts",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "symbol",
        "timeframe",
    ]
    with atomic_file(path, text=True) as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for row in rejected[columns].itertuples(index=False):
            writer.writerow(row)


def _normalise_labels(column: pd.Series, case: Callable[[str], str]) -> pd.Series:
    codes, uniques = pd.factorize(column.astype(str))
    cleaned = np.array([case(u.strip()) for u in uniques], dtype=object)
    return pd.Series(cleaned[codes], index=column.index)


def prepare(
    frame: pd.DataFrame, options: IngestOptions, source: str
) -> tuple[pd.DataFrame, str | None]:
    """Fills symbol/timeframe columns from options or inference; returns (frame, inferred_tf)."""
    frame = frame.copy()
    if options.symbol is not None:
        frame["symbol"] = parse_symbol(options.symbol)
    elif "symbol" not in frame:
        raise BadParameterError(
            f"{source}: the file has no symbol/ticker column; pass --symbol", field="symbol"
        )
    else:
        frame["symbol"] = _normalise_labels(frame["symbol"], str.upper)
    inferred = None
    if options.timeframe is not None:
        frame["timeframe"] = options.timeframe.value
    elif "timeframe" not in frame:
        guess = infer_timeframe(frame["ts"])
        if guess is None:
            raise BadParameterError(
                f"{source}: no timeframe column and the bar spacing matches no timeframe; "
                "pass --timeframe",
                field="timeframe",
            )
        frame["timeframe"] = guess.value
        inferred = guess.value
    else:
        frame["timeframe"] = _normalise_labels(frame["timeframe"], str.lower)
    return frame, inferred


async def ingest_frame(
    db: Database,
    frame: pd.DataFrame,
    options: IngestOptions,
    *,
    source: str,
    rejects_path: Path | None,
) -> IngestReport:
    prepared, inferred = prepare(frame, options, source)
    accepted, rejected = validate_bars(prepared)
    reasons: Counter[str] = Counter()
    for text in rejected["reason"]:
        for part in str(text).split("; "):
            reasons[part.split(" '")[0].split(" of line")[0]] += 1
    if len(rejected) and rejects_path is not None:
        write_rejects(rejected, rejects_path)
    report = IngestReport(
        source=source,
        rows_read=len(prepared),
        rows_written=0,
        rejected=len(rejected),
        rejects_path=str(rejects_path) if len(rejected) and rejects_path else None,
        reasons=dict(reasons),
        timeframe_inferred=inferred,
        symbols=sorted(accepted["symbol"].unique().tolist()),
    )
    if options.strict and len(rejected):
        return report
    symbols = {}
    for symbol, tf in accepted[["symbol", "timeframe"]].drop_duplicates().itertuples(index=False):
        asset_class = options.asset_class or guess_asset_class(symbol)
        symbols[symbol] = SymbolInfo(
            symbol=symbol,
            asset_class=asset_class,
            tick_size=options.tick_size or _TICK_BY_CLASS[asset_class],
            base_timeframe=Timeframe(tf),
        )
    try:
        report.rows_written = await write_bars(
            db,
            accepted,
            symbols,
            batch_rows=options.batch_rows,
            show_progress=options.show_progress,
        )
    except DatabaseUnavailableError as exc:
        raise DatabaseUnavailableError(
            exc.settings,
            f"{exc.reason}; the batches committed before are kept, and re-running the same "
            "command completes the job without duplicates",
        ) from exc
    series = [(symbol, info.base_timeframe) for symbol, info in symbols.items()]
    for calendar in await CalendarStore(db).refresh(series):
        report.calendars[calendar.symbol] = calendar.describe()
    return report
