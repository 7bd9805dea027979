"""Inputs of the simple baselines every model is judged against, for training and serving alike.

Two baselines need inputs from the bars (the third, the training mean, needs none):
- **HAR-style**: the mean log relative range (`log((high - low) / close)`) over the last 1 bar,
  1 hour, 1 day and 1 week of bars, each minus the log of the current ATR/close, so the four
  numbers say how the recent ranges compare with the ATR the targets are measured in. Windows are
  wall-clock durations turned into bar counts like the horizons (1 bar at least). A series
  shorter than a window averages what it has, from its first bar: training sees the same
  expanding mean on the first bars that serving computes for a young symbol.
- **Seasonal**: the bar's (day of week, hour of day) cell, 0..167, in UTC.

`baseline_features` is the batch definition (training, backtests); `BaselineWindow` carries the
same numbers bar by bar in O(1) for serving. Bump BASELINE_VERSION when either changes meaning:
a serving head fitted on another version is refused.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
import pandas as pd

from orchestrator.marketdata.timeframes import Timeframe

BASELINE_VERSION = 1
WINDOW_SECONDS: tuple[int, ...] = (0, 3600, 86400, 7 * 86400)  # 0: the latest bar alone
HAR_NAMES: tuple[str, ...] = ("har_bar", "har_hour", "har_day", "har_week")
SEASON_CELLS = 7 * 24
RANGE_FLOOR = 1e-5  # a flat bar (high == low) counts as a 0.1 bp range, not log(0)

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


def har_windows(timeframe: Timeframe) -> list[int]:
    """Bars per HAR window at this timeframe (1 bar, 1 h, 1 d, 1 week; at least 1 each)."""
    return [max(1, seconds // timeframe.seconds) for seconds in WINDOW_SECONDS]


def history_bars(timeframe: Timeframe) -> int:
    """Bars the longest window reads: a serving seed loads at least this many."""
    return max(har_windows(timeframe))


def log_relative_range(high: F64, low: F64, close: F64) -> F64:
    out: F64 = np.log(np.maximum((high - low) / close, RANGE_FLOOR))
    return out


def season_cells(index: pd.DatetimeIndex) -> I64:
    """(day of week, hour) of each bar's open time as one cell number, Monday 00h = 0."""
    utc = index.tz_convert("UTC") if index.tz is not None else index
    cells: I64 = (utc.dayofweek.to_numpy() * 24 + utc.hour.to_numpy()).astype(np.int64)
    return cells


def season_cell(ts: pd.Timestamp) -> int:
    """season_cells for one timestamp (the per-bar serving path: no index built)."""
    utc = ts.tz_convert("UTC") if ts.tz is not None else ts
    return int(utc.dayofweek) * 24 + int(utc.hour)


def baseline_features(bars: pd.DataFrame, atr: F64, timeframe: Timeframe) -> F64:
    """(T, 4) HAR inputs per bar; NaN where ATR is not known yet."""
    high, low, close = (bars[k].to_numpy(np.float64) for k in ("high", "low", "close"))
    log_range = pd.Series(log_relative_range(high, low, close))
    with np.errstate(divide="ignore", invalid="ignore"):
        log_atr = np.log(atr / close)
    columns = [
        log_range.rolling(window, min_periods=1).mean().to_numpy() - log_atr
        for window in har_windows(timeframe)
    ]
    out = np.stack(columns, axis=1)
    out[~np.isfinite(out)] = np.nan
    return out


class BaselineWindow:
    """The last week of log ranges and their running sums per window, one bar at a time.

    Running sums are re-added from the ring once per lap, so rounding cannot build up over a
    long-lived state (the batch's rolling mean keeps its own sums)."""

    __slots__ = ("_count", "_ring", "_size", "_slot", "_sums", "_windows")

    def __init__(self, timeframe: Timeframe) -> None:
        self._windows = har_windows(timeframe)
        self._size = max(self._windows)
        self._ring = np.zeros(self._size, dtype=np.float64)
        self._sums = [0.0] * len(self._windows)
        self._slot = -1
        self._count = 0

    def update(self, high: float, low: float, close: float) -> None:
        value = math.log(max((high - low) / close, RANGE_FLOOR))
        size = self._size
        slot = self._slot + 1 if self._slot + 1 < size else 0
        for k, window in enumerate(self._windows):
            self._sums[k] += value
            if self._count >= window:  # the value leaving this window
                self._sums[k] -= self._ring[(slot - window) % size]
        self._ring[slot] = value
        self._slot = slot
        self._count += 1
        if slot == size - 1:
            self._resum()

    def _resum(self) -> None:
        for k, window in enumerate(self._windows):
            n = min(window, self._count)
            picks = (self._slot - np.arange(n)) % self._size
            self._sums[k] = math.fsum(self._ring[picks].tolist())

    def features(self, atr: float, close: float) -> F64:
        """The HAR inputs of the newest bar (baseline_features' last row); NaN before any bar
        or while ATR is unknown."""
        if self._count == 0 or not atr > 0:
            return np.full(len(self._windows), np.nan)
        log_atr = math.log(atr / close)
        return np.array(
            [
                self._sums[k] / min(window, self._count) - log_atr
                for k, window in enumerate(self._windows)
            ]
        )
