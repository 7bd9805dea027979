"""Inputs of the simple baselines every model is judged against, for training and serving alike.

Per bar three numbers are read from its OHLC, then averaged over the last 1 bar, 1 hour, 1 day
and 1 week of bars (wall-clock durations turned into bar counts like the horizons, 1 bar at least):
- the **log relative range** `log((high - low) / close)` (a Parkinson-type estimator in logs),
  minus the log of the current ATR/close: the HAR and log-HAR inputs;
- the **Garman–Klass variance** `0.5 ln(H/L)^2 - (2 ln 2 - 1) ln(C/O)^2` (never negative, since
  |ln C/O| <= ln H/L); the square root of its window mean over ATR/close is the range-based HAR's
  input (a volatility level, not a log);
- the **negative part of the bar's return** `min(ln(C/O), 0)` over ATR/close: the leverage term of
  log-HAR (falls increase the next ranges more than rises). Open-to-close, so a bar needs no
  earlier bar and a seeded window equals the batch definition from its first bar.

A series shorter than a window averages what it has, from its first bar: training sees the same
expanding mean on the first bars that serving computes for a young symbol.
The seasonal baseline's input is the bar's (day of week, hour of day) cell, 0..167, in UTC.

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

BASELINE_VERSION = 2
WINDOW_SECONDS: tuple[int, ...] = (0, 3600, 86400, 7 * 86400)  # 0: the latest bar alone
WINDOW_LABELS: tuple[str, ...] = ("bar", "hour", "day", "week")
HAR_NAMES: tuple[str, ...] = tuple(f"har_{w}" for w in WINDOW_LABELS)
GK_NAMES: tuple[str, ...] = tuple(f"gk_{w}" for w in WINDOW_LABELS)
LEVERAGE_NAMES: tuple[str, ...] = ("leverage_day", "leverage_week")
BASELINE_INPUTS: tuple[str, ...] = (*HAR_NAMES, *GK_NAMES, *LEVERAGE_NAMES)
HAR_COLUMNS = slice(0, 4)  # log range minus log ATR/close, per window
GK_COLUMNS = slice(4, 8)  # sqrt(mean Garman-Klass variance) / (ATR/close), per window
LEVERAGE_COLUMNS = slice(8, 10)  # mean negative return / (ATR/close), day and week windows
SEASON_CELLS = 7 * 24
RANGE_FLOOR = 1e-5  # a flat bar (high == low) counts as a 0.1 bp range, not log(0)
_GK_CLOSE_WEIGHT = 2 * math.log(2) - 1

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


def bar_measures(open_: F64, high: F64, low: F64, close: F64) -> F64:
    """(T, 3) per bar: log relative range, Garman-Klass variance, negative open-to-close return."""
    log_hl = np.log(np.maximum(high / low, 1 + RANGE_FLOOR))
    log_co = np.log(close / open_)
    garman_klass = np.maximum(0.5 * log_hl**2 - _GK_CLOSE_WEIGHT * log_co**2, 0.0)
    return np.stack(
        [log_relative_range(high, low, close), garman_klass, np.minimum(log_co, 0.0)], axis=1
    )


def _from_window_means(log_range: F64, gk: F64, negative: F64, atr_rel: F64) -> F64:
    """The BASELINE_INPUTS from each measure's window means (one row per window in the last axis
    of the inputs: 4 windows) and ATR/close; shared by the batch and the serving window."""
    with np.errstate(divide="ignore", invalid="ignore"):
        log_atr = np.log(atr_rel)[..., np.newaxis]
        scale = atr_rel[..., np.newaxis]
        out = np.concatenate(
            [log_range - log_atr, np.sqrt(gk) / scale, negative[..., 2:] / scale], axis=-1
        )
    out[~np.isfinite(out)] = np.nan
    result: F64 = out
    return result


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
    """(T, 10) BASELINE_INPUTS per bar; NaN where ATR is not known yet."""
    o, h, low, c = (bars[k].to_numpy(np.float64) for k in ("open", "high", "low", "close"))
    measures = pd.DataFrame(bar_measures(o, h, low, c))
    means = [
        measures.rolling(window, min_periods=1).mean().to_numpy()
        for window in har_windows(timeframe)
    ]
    by_measure = np.stack(means, axis=2)  # (T, 3 measures, 4 windows)
    return _from_window_means(
        by_measure[:, 0], by_measure[:, 1], by_measure[:, 2], np.asarray(atr) / c
    )


class BaselineWindow:
    """The last week of bar measures and their running sums per window, one bar at a time.

    Running sums are re-added from the ring once per lap, so rounding cannot build up over a
    long-lived state (the batch's rolling mean keeps its own sums). A state is seeded from many
    bars at once (`extend`, vectorised: 14 ms per 5m week bar by bar, measured) and then
    updated per closed bar in plain floats (a few microseconds).

    The ring is float32 (a 5m week is 2,016 bars x 3 measures: 24 KB rather than 48 KB, for
    10,000 symbols x 3 timeframes on one machine); each measure is rounded to float32 before
    it enters the sums, so what leaves a window is exactly what entered it. The log range (about
    -7) is stored less its first value, so float32 rounds a number near 0: the means stay within
    ~1e-8 of the batch's float64 ones (4.6e-7 without the offset), inside the parity tests' 1e-6."""

    __slots__ = ("_count", "_offset", "_ring", "_size", "_slot", "_sums", "_windows")

    def __init__(self, timeframe: Timeframe) -> None:
        self._windows = har_windows(timeframe)
        self._size = max(self._windows)
        self._ring = np.zeros((self._size, 3), dtype=np.float32)
        self._sums = [[0.0, 0.0, 0.0] for _ in self._windows]
        self._slot = -1
        self._count = 0
        self._offset = 0.0  # the log range's reference: its first value

    def extend(self, open_: F64, high: F64, low: F64, close: F64) -> None:
        """update() for each bar in order, in one vectorised step: the ring ends as update()
        leaves it, and the sums are summed afresh from it."""
        values = bar_measures(open_, high, low, close)
        if len(values) == 0:
            return
        if self._count == 0:
            self._offset = float(values[0, 0])
        values[:, 0] -= self._offset
        size = self._size
        total = self._count + len(values)
        kept = values[-size:]
        positions = np.arange(total - len(kept), total) % size  # update()'s slots for them
        self._ring[positions] = kept
        self._slot = (total - 1) % size
        self._count = total
        self._resum()

    def update(self, open_: float, high: float, low: float, close: float) -> None:
        log_hl = math.log(max(high / low, 1 + RANGE_FLOOR))
        log_co = math.log(close / open_)
        log_range = math.log(max((high - low) / close, RANGE_FLOOR))
        if self._count == 0:
            self._offset = log_range
        measures = np.array(  # bar_measures for one bar, stored as the ring stores them
            (
                log_range - self._offset,
                max(0.5 * log_hl * log_hl - _GK_CLOSE_WEIGHT * log_co * log_co, 0.0),
                min(log_co, 0.0),
            ),
            dtype=np.float32,
        )
        value = measures.tolist()
        size, ring = self._size, self._ring
        slot = self._slot + 1 if self._slot + 1 < size else 0
        for k, window in enumerate(self._windows):
            sums = self._sums[k]
            if self._count >= window:  # the value leaving this window
                leaving = ring[(slot - window) % size].tolist()
                for m in range(3):
                    sums[m] += value[m] - leaving[m]
            else:
                for m in range(3):
                    sums[m] += value[m]
        ring[slot] = measures
        self._slot = slot
        self._count += 1
        if slot == size - 1:
            self._resum()

    def _resum(self) -> None:
        for k, window in enumerate(self._windows):
            n = min(window, self._count)
            picks = (self._slot - np.arange(n)) % self._size
            self._sums[k] = [math.fsum(column) for column in self._ring[picks].T.tolist()]

    # What features/batch_inputs.py reads to compute many windows' features at once.
    @property
    def windows(self) -> list[int]:
        return self._windows

    @property
    def sums(self) -> list[list[float]]:
        """Per window, the running sums of the three measures (the log range less `offset`)."""
        return self._sums

    @property
    def count(self) -> int:
        return self._count

    @property
    def offset(self) -> float:
        return self._offset

    def features(self, atr: float, close: float) -> F64:
        """The inputs of the newest bar (baseline_features' last row); NaN before any bar or
        while ATR is unknown."""
        if self._count == 0 or not atr > 0:
            return np.full(len(BASELINE_INPUTS), np.nan)
        # _from_window_means for one bar in plain floats: a dozen numbers, once per key and
        # sweep, where numpy's per-call cost was ~6 % of a 10,000-symbol sweep's loop time.
        scale = atr / close
        log_atr = math.log(scale)
        har, gk, leverage = [], [], []
        for k, (window, sums) in enumerate(zip(self._windows, self._sums, strict=True)):
            count = float(min(window, self._count))
            har.append(sums[0] / count + self._offset - log_atr)
            mean_gk = sums[1] / count
            gk.append(math.sqrt(mean_gk) / scale if mean_gk >= 0.0 else math.nan)
            if k >= 2:  # the day and week windows
                leverage.append(sums[2] / count / scale)
        out = np.array(har + gk + leverage)
        out[~np.isfinite(out)] = np.nan
        return out
