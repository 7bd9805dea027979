"""A series' open predictions in columns, with each bar folded in as it is read.

A horizon's outcome needs of its bars only the highest high, the lowest low and, at the label
horizon, whether each side's take-profit or stop came first. So those are kept per open
prediction and horizon, updated from every bar read, and the bars are not kept. Before, every
open prediction was an object (~720 B) and the bars stayed until the longest horizon had passed
(1,440 of them for a 5m key): ~80 KB per 5m key after a week (tracemalloc), ~1.75 GB at
10,000 symbols over three timeframes. Now ~24 KB per 5m key (tests/quality/test_tracker.py, the
strides test), and no object per prediction for the collector to walk.

One `OpenRows` per (version, horizon, what the head serves) of a series: the rows share their
horizon's length, weight, costs and flags; each row is one prediction. A row counts the stored
bars after its own (as the old bar arrays did: a gap in the data is not a bar), so a horizon ends
after that many bars whatever the calendar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

# Columns of a row.
CLOSE, ATR, RANGE_HIGH, RANGE_LOW, HIGHEST, LOWEST = range(6)
INTERVALS = slice(6, 10)  # the served intervals: the high's range lower, upper; the low's
BASELINE_HIGH, BASELINE_LOW = 10, 11
RANGE_COLUMNS = 12
# Label horizon only: the served direction and probabilities, and each side's trade so far.
DIRECTION, CONFIDENCE, P_LONG, P_SHORT, LONG_TRADE, SHORT_TRADE = range(12, 18)
TRADE_COLUMNS = 18
OPEN, WON, LOST = 0.0, 1.0, -1.0  # a trade's state: neither level reached yet, TP first, SL first
MAX_OPEN_ROWS = 1_000  # per block: rows that never resolve (reads failing for days) are dropped


@dataclass(frozen=True)
class Horizon:
    """What every row of a block shares."""

    version: str
    position: int  # the horizon's place in the spec's horizons
    name: str
    bars: int
    weight: int  # the outcomes one scored outcome stands for (totals.strides)
    is_label: bool  # TP/SL trades are scored here
    tp_atr: float
    sl_atr: float
    has_intervals: bool
    has_baseline: bool


@dataclass
class Resolved:
    """The rows whose horizon has ended, as columns (the outcomes are built from these)."""

    horizon: Horizon
    epochs: I64
    values: F64

    def realised(self) -> tuple[F64, F64]:
        """The realised ranges over the horizon, in ATR: up from the close, down from it."""
        v = self.values
        return (v[:, HIGHEST] - v[:, CLOSE]) / v[:, ATR], (v[:, CLOSE] - v[:, LOWEST]) / v[:, ATR]


def served_rows(
    *,
    close: F64,
    atr: F64,
    ranges: F64,
    intervals: F64 | None,
    baseline: F64 | None,
    direction: F64,
    confidence: F64,
    p_long: F64,
    p_short: F64,
) -> F64:
    """(N, H, TRADE_COLUMNS): the row of every horizon of N predictions, from what was served
    for them (ranges (N, 2H), intervals (N, 2H, 2), baseline (N, 2H), the rest (N,))."""
    n, h = len(close), ranges.shape[1] // 2
    rows: F64 = np.full((n, h, TRADE_COLUMNS), np.nan)
    rows[:, :, CLOSE] = close[:, np.newaxis]
    rows[:, :, ATR] = atr[:, np.newaxis]
    rows[:, :, RANGE_HIGH] = ranges[:, 0::2]
    rows[:, :, RANGE_LOW] = ranges[:, 1::2]
    if intervals is not None:
        rows[:, :, INTERVALS] = intervals.reshape(n, h, 4)
    if baseline is not None:
        rows[:, :, BASELINE_HIGH : BASELINE_LOW + 1] = baseline.reshape(n, h, 2)
    for column, values in (
        (DIRECTION, direction),
        (CONFIDENCE, confidence),
        (P_LONG, p_long),
        (P_SHORT, p_short),
    ):
        rows[:, :, column] = values[:, np.newaxis]
    return rows


class OpenRows:
    """The open rows of one horizon, oldest first, in arrays grown by doubling. The two numbers a
    pass asks of every block (the oldest bar its rows have seen, the earliest bar by which one
    can end) are kept up to date as rows are added and folded, so no pass scans the rows."""

    def __init__(self, horizon: Horizon, step_s: int, capacity: int = 8) -> None:
        self.horizon = horizon
        self.step_s = step_s  # the series' bar length: bar `k` after `t` opens at t + k * step
        width = TRADE_COLUMNS if horizon.is_label else RANGE_COLUMNS
        self.values: F64 = np.empty((capacity, width))
        self.epochs: I64 = np.empty(capacity, np.int64)  # each row's own bar (open, epoch s)
        self.seen: I64 = np.empty(capacity, np.int64)  # the newest bar folded into it
        self.counted: I64 = np.empty(capacity, np.int64)  # bars folded into it so far
        self.n = 0
        self.last = -1  # the newest row's bar: a bar after it is not held
        self._oldest_seen: int | None = None
        self._due_at: int | None = None

    def add(self, epoch: int, row: F64) -> None:
        """A prediction of the bar opening at `epoch`: `row` holds its served columns (as many
        as the block has; HIGHEST, LOWEST and the trades are set here)."""
        if self.n == MAX_OPEN_ROWS:
            self._keep(np.arange(1, self.n))
        if self.n == len(self.epochs):
            self._grow()
        n = self.n
        self.values[n] = row[: self.values.shape[1]]
        self.values[n, HIGHEST], self.values[n, LOWEST] = -np.inf, np.inf
        if self.horizon.is_label:
            self.values[n, LONG_TRADE] = self.values[n, SHORT_TRADE] = OPEN
        self.epochs[n] = self.seen[n] = epoch
        self.counted[n] = 0
        self.n = n + 1
        self.last = max(self.last, epoch)
        ends = epoch + self.horizon.bars * self.step_s
        if self._oldest_seen is None or epoch < self._oldest_seen:
            self._oldest_seen = epoch
        if self._due_at is None or ends < self._due_at:
            self._due_at = ends

    def holds(self, epoch: int) -> bool:
        return epoch <= self.last and bool((self.epochs[: self.n] == epoch).any())

    def due_at(self) -> int | None:
        """The earliest bar time at which a row can end (no gap in the bars till then)."""
        return self._due_at

    def oldest_seen(self) -> int | None:
        """The newest bar every row has folded: a read after it gives each what it lacks."""
        return self._oldest_seen

    def fold(self, times: I64, highs: F64, lows: F64, after: int) -> Resolved | None:
        """Folds the bars read after `after` (open times ascending, every stored one) into the
        rows they follow: each row takes those after what it has seen, up to its horizon's
        end, if it has seen `after` (a row of an older bar lacks some: it waits for a read from
        there). Takes out and returns the rows whose horizon ended."""
        bars = ReadBars(times[np.newaxis], highs[np.newaxis], lows[np.newaxis])
        return fold_blocks([self], np.zeros(1, np.intp), bars, np.array([after]))[0]

    def refill(
        self,
        values: F64,
        seen: I64,
        counted: I64,
        ended: npt.NDArray[np.bool_] | None,
        oldest_seen: int,
        due_at: int,
    ) -> None:
        """Its rows after fold_blocks folded them, less those that `ended` (handed over; None:
        none did). Where none ended, the bounds fold_blocks computed for every block at once
        hold; otherwise they are taken from the rows kept."""
        n = self.n
        self.values[:n], self.seen[:n], self.counted[:n] = values, seen, counted
        if ended is not None:
            self._keep(np.flatnonzero(~ended))
        else:
            self._oldest_seen, self._due_at = oldest_seen, due_at

    def _keep(self, rows: npt.NDArray[np.intp]) -> None:
        k = len(rows)
        for column in (self.values, self.epochs, self.seen, self.counted):
            column[:k] = column[rows]
        self.n = k
        if k:
            seen = self.seen[:k]
            self._oldest_seen = int(seen.min())
            left = self.horizon.bars - self.counted[:k]
            self._due_at = int((seen + left * self.step_s).min())
        else:
            self._oldest_seen = self._due_at = None

    def _grow(self) -> None:
        self.values = np.concatenate([self.values, np.empty_like(self.values)])
        for name in ("epochs", "seen", "counted"):
            column = getattr(self, name)
            setattr(self, name, np.concatenate([column, np.empty_like(column)]))


@dataclass(frozen=True)
class ReadBars:
    """The bars read for several series, one row each, padded to the longest: open times
    (ascending, PAD after a series' last bar), highs and lows."""

    times: I64
    highs: F64
    lows: F64

    @classmethod
    def padded(cls, series: list[tuple[I64, F64, F64]]) -> ReadBars:
        width = max((len(t) for t, _, _ in series), default=0)
        times = np.full((len(series), width), PAD, np.int64)
        highs = np.zeros((len(series), width))
        lows = np.zeros((len(series), width))
        for i, (t, h, low) in enumerate(series):
            times[i, : len(t)], highs[i, : len(t)], lows[i, : len(t)] = t, h, low
        return cls(times, highs, lows)


PAD = -1  # a padded bar's time: before every row's, so no row takes it


def fold_blocks(
    blocks: Sequence[OpenRows], owners: npt.NDArray[np.intp], bars: ReadBars, after: I64
) -> list[Resolved | None]:
    """OpenRows.fold for many blocks of one horizon in one set of array operations: block i
    takes the bars of row owners[i] of `bars`, read after after[owners[i]]. A pass folds the new
    bars of thousands of series; block by block that was ~50 µs of numpy calls each, the bulk of
    the pass (bench/scale/quality.py). Returns each block's ended rows, as its fold() would."""
    out: list[Resolved | None] = [None] * len(blocks)
    live = [i for i, block in enumerate(blocks) if block.n]
    if not live or not bars.times.shape[1]:
        return out
    horizon, step_s = blocks[live[0]].horizon, blocks[live[0]].step_s
    sizes = np.array([blocks[i].n for i in live])
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    series = np.repeat(owners[live], sizes)
    values = np.concatenate([blocks[i].values[: blocks[i].n] for i in live])
    seen = np.concatenate([blocks[i].seen[: blocks[i].n] for i in live])
    counted = np.concatenate([blocks[i].counted[: blocks[i].n] for i in live])
    times, highs, lows = bars.times[series], bars.highs[series], bars.lows[series]

    use = (times > seen[:, np.newaxis]) & (seen >= after[series])[:, np.newaxis]
    use &= np.cumsum(use, axis=1) <= (horizon.bars - counted)[:, np.newaxis]
    values[:, HIGHEST] = np.maximum(values[:, HIGHEST], np.where(use, highs, -np.inf).max(axis=1))
    values[:, LOWEST] = np.minimum(values[:, LOWEST], np.where(use, lows, np.inf).min(axis=1))
    if horizon.is_label:
        _trade(horizon, values, use, highs, lows)
    counted += use.sum(axis=1)
    np.maximum(seen, np.where(use, times, seen[:, np.newaxis]).max(axis=1), out=seen)
    ended = counted >= horizon.bars
    # The bounds of blocks where no row ended: the oldest bar seen, the earliest a row can end.
    oldest = np.minimum.reduceat(seen, starts)
    due = np.minimum.reduceat(seen + (horizon.bars - counted) * step_s, starts)
    any_ended = np.add.reduceat(ended, starts).astype(bool).tolist()
    bounds = zip(oldest.tolist(), due.tolist(), strict=True)
    for k, (i, (block_oldest, block_due)) in enumerate(zip(live, bounds, strict=True)):
        block, row = blocks[i], slice(starts[k], starts[k] + sizes[k])
        done = ended[row] if any_ended[k] else None
        if done is not None:
            out[i] = Resolved(horizon, block.epochs[: block.n][done], values[row][done])
        block.refill(values[row], seen[row], counted[row], done, block_oldest, block_due)
    return out


def _trade(
    horizon: Horizon, values: F64, use: npt.NDArray[np.bool_], highs: F64, lows: F64
) -> None:
    """Each side's trade over the bars in order: the first bar reaching the stop ends it lost
    (also when it reaches the take-profit too, as in training and the backtester), one reaching
    only the take-profit ends it won."""
    close, atr = values[:, CLOSE], values[:, ATR]
    for column, d in ((LONG_TRADE, 1.0), (SHORT_TRADE, -1.0)):
        take = close + d * horizon.tp_atr * atr
        stop = close - d * horizon.sl_atr * atr
        state = values[:, column]
        for j in np.flatnonzero(use.any(axis=0)):
            live = use[:, j] & (state == OPEN)
            if d > 0:
                stopped, profited = lows[:, j] <= stop, highs[:, j] >= take
            else:
                stopped, profited = highs[:, j] >= stop, lows[:, j] <= take
            state[live & stopped] = LOST
            state[live & ~stopped & profited] = WON
