"""Row validation for ingestion. Every rejected row keeps its line number and every reason."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt
import pandas as pd

from orchestrator.marketdata.timeframes import SYMBOL_PATTERN, VALID_TIMEFRAMES, Timeframe

# Column limits from the schema: DECIMAL(20,10) prices, DECIMAL(28,8) volume.
MAX_PRICE = 1e10
MAX_VOLUME = 1e20
_TIMEFRAMES = [tf.value for tf in Timeframe]
_GRID = {
    Timeframe.W1.value: "weeks open on Monday 00:00 UTC",
    Timeframe.MO1.value: "months open on the 1st 00:00 UTC",
}


def validate_bars(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Splits rows into (accepted, rejected); `rejected` carries a `reason` column.

    Expects the reader's columns plus `symbol` and `timeframe` filled for every row.
    """
    n = len(frame)
    reasons: list[list[str]] = [[] for _ in range(n)]

    def flag(mask: npt.NDArray[np.bool_], message: str | Callable[[], pd.Series]) -> None:
        """`message` is a string or a thunk for per-row text, built only when rows fail."""
        failing = np.flatnonzero(mask)
        if failing.size == 0:
            return
        texts = None if isinstance(message, str) else message()
        for i in failing:
            reasons[i].append(message if texts is None else str(texts.iloc[i]))

    symbol = frame["symbol"].astype(str)
    # Pattern checks on the distinct values only: files hold few symbols but many rows.
    codes, uniques = pd.factorize(symbol)
    valid_unique = np.array([bool(SYMBOL_PATTERN.fullmatch(u)) for u in uniques], dtype=bool)
    bad_symbol = ~valid_unique[codes] if len(uniques) else np.zeros(n, dtype=bool)
    flag(
        bad_symbol,
        lambda: "symbol " + symbol.map(repr) + " is not 1-20 characters of A-Z 0-9 . _ -",
    )

    timeframe = frame["timeframe"].astype(str)
    bad_tf = ~timeframe.isin(_TIMEFRAMES).to_numpy()
    flag(bad_tf, lambda: "timeframe " + timeframe.map(repr) + f" is not one of {VALID_TIMEFRAMES}")

    ts = frame["ts"]
    bad_ts = ts.isna().to_numpy()
    flag(bad_ts, lambda: "unparseable timestamp " + frame["raw_ts"].map(repr))

    prices = frame[["open", "high", "low", "close"]].to_numpy(dtype=np.float64)
    for j, name in enumerate(("open", "high", "low", "close")):
        column = prices[:, j]
        flag(~np.isfinite(column), f"{name} is not a finite number")
        with np.errstate(invalid="ignore"):
            flag(np.isfinite(column) & (column <= 0), f"{name} must be positive")
            flag(np.isfinite(column) & (column >= MAX_PRICE), f"{name} exceeds {MAX_PRICE:g}")
    o, h, low, c = prices.T
    # Range checks only make sense once every price is itself valid.
    with np.errstate(invalid="ignore"):
        sane = np.isfinite(prices).all(axis=1) & (prices > 0).all(axis=1)
        flag(sane & (h < np.maximum(o, c)), "high is below max(open, close)")
        flag(sane & (low > np.minimum(o, c)), "low is above min(open, close)")

    volume = frame["volume"].to_numpy(dtype=np.float64)
    flag(~np.isfinite(volume), "volume is not a finite number")
    with np.errstate(invalid="ignore"):
        flag(volume < 0, "volume must be >= 0")
        flag(volume >= MAX_VOLUME, f"volume exceeds {MAX_VOLUME:g}")

    epoch_ns = ts.to_numpy(dtype="datetime64[ns]").astype(np.int64)
    epoch_s = np.where(bad_ts, 0, epoch_ns // 10**9)
    misaligned = np.zeros(n, dtype=bool)
    for tf in Timeframe:
        rows = (timeframe == tf.value).to_numpy() & ~bad_ts
        if rows.any():
            opens = pd.DatetimeIndex(ts[rows])
            misaligned[rows] = tf.floor_index(opens) != opens
    flag(
        misaligned,
        lambda: (
            "timestamp "
            + frame["raw_ts"].map(repr)
            + " is not aligned to the "
            + timeframe
            + " grid ("
            + timeframe.map(_GRID).fillna("UTC")
            + ")"
        ),
    )

    key = pd.DataFrame({"symbol": symbol, "timeframe": timeframe, "ts": epoch_s})
    keyed = ~bad_ts
    duplicated = key.duplicated(keep="first").to_numpy() & keyed
    if duplicated.any():
        first_line = (
            frame.assign(_s=epoch_s)[keyed]
            .groupby(["symbol", "timeframe", "_s"])["line"]
            .transform("min")
        )
        first_of = pd.Series(0, index=frame.index)
        first_of[keyed] = first_line
        flag(
            duplicated,
            lambda: "duplicate of line " + first_of.astype(str) + " (same symbol, timeframe, time)",
        )

    joined = pd.Series(["; ".join(r) for r in reasons], index=frame.index)
    bad = (joined != "").to_numpy()
    rejected = frame[bad].assign(reason=joined[bad])
    return frame[~bad], rejected
