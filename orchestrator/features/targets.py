"""Training targets: future range per horizon in ATR units, and triple-barrier TP/SL labels."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

FloatArray = npt.NDArray[np.float64]


def _future_extreme(values: FloatArray, horizon: int, kind: str) -> FloatArray:
    """max/min over the next `horizon` bars (t+1 .. t+horizon); NaN where the future is short."""
    series = pd.Series(values[::-1])
    rolled = series.rolling(horizon, min_periods=horizon)
    extreme = (rolled.max() if kind == "max" else rolled.min()).to_numpy()[::-1]
    out = np.full_like(values, np.nan)
    out[:-1] = extreme[1:]
    return out


def range_targets(bars: pd.DataFrame, atr: FloatArray, horizon_bars: list[int]) -> FloatArray:
    """(T, 2H): for each horizon [up, down] = (max high - close) / ATR, (close - min low) / ATR."""
    close = bars["close"].to_numpy(np.float64)
    high = bars["high"].to_numpy(np.float64)
    low = bars["low"].to_numpy(np.float64)
    columns = []
    for horizon in horizon_bars:
        columns.append((_future_extreme(high, horizon, "max") - close) / atr)
        columns.append((close - _future_extreme(low, horizon, "min")) / atr)
    return np.stack(columns, axis=1)


def triple_barrier(
    bars: pd.DataFrame,
    atr: FloatArray,
    horizon: int,
    tp_atr: float,
    sl_atr: float,
    direction: int,
) -> FloatArray:
    """1 when take-profit (tp_atr x ATR) is reached before stop-loss (sl_atr x ATR) within
    `horizon` bars after the entry at close t, else 0; NaN where the future is short.
    A bar touching both levels counts as a stop first (pessimistic, as in the backtester)."""
    close = bars["close"].to_numpy(np.float64)
    high = bars["high"].to_numpy(np.float64)
    low = bars["low"].to_numpy(np.float64)
    n = close.size
    take = close + direction * tp_atr * atr
    stop = close - direction * sl_atr * atr
    outcome = np.full(n, np.nan)
    undecided = np.ones(n, dtype=bool)
    for step in range(1, horizon + 1):
        idx = np.arange(n) + step
        valid = idx < n
        safe = np.where(valid, idx, n - 1)
        hi, lo = high[safe], low[safe]
        if direction > 0:
            stopped, profited = lo <= stop, hi >= take
        else:
            stopped, profited = hi >= stop, lo <= take
        hit_stop = undecided & valid & stopped
        hit_take = undecided & valid & profited & ~stopped
        outcome[hit_stop] = 0.0
        outcome[hit_take] = 1.0
        undecided &= ~(hit_stop | hit_take)
    timed_out = undecided & (np.arange(n) + horizon < n)
    outcome[timed_out] = 0.0
    return outcome


NEITHER, TAKE_PROFIT, STOP = 0, 1, 2  # barrier outcome codes; -1: the future is too short


def first_touch(
    bars: pd.DataFrame, atr: FloatArray, levels: tuple[float, ...], direction: int, max_bars: int
) -> npt.NDArray[np.int32]:
    """(T, levels): the first bar after t (1..max_bars) whose high reaches close + level x ATR
    (direction +1) or whose low reaches close - level x ATR (-1); max_bars + 1 when none does.
    Only the rows still waiting are checked at each step, so the cost is the bars waited."""
    close = bars["close"].to_numpy(np.float64)
    extreme = bars["high" if direction > 0 else "low"].to_numpy(np.float64) * direction
    n = close.size
    out = np.full((n, len(levels)), max_bars + 1, np.int32)
    for column, level in enumerate(levels):
        target = (close + direction * level * atr) * direction
        waiting = np.flatnonzero(np.isfinite(target))
        for step in range(1, max_bars + 1):
            waiting = waiting[waiting + step < n]
            if waiting.size == 0:
                break
            reached = extreme[waiting + step] >= target[waiting]
            out[waiting[reached], column] = step
            waiting = waiting[~reached]
    return out


def barrier_outcomes(
    bars: pd.DataFrame,
    atr: FloatArray,
    horizon_bars: list[int],
    tp_grid: tuple[float, ...],
    sl_grid: tuple[float, ...],
) -> npt.NDArray[np.int8]:
    """(T, 2, H, tp, sl) outcome codes on a grid of barriers, long then short, per horizon:
    TAKE_PROFIT or STOP by whichever level a bar reaches first (a bar reaching both: STOP, as
    triple_barrier and the backtester), NEITHER when none is reached within the horizon, -1
    where fewer than h bars follow."""
    levels = tuple(sorted(set(tp_grid) | set(sl_grid)))
    longest = max(horizon_bars)
    up = first_touch(bars, atr, levels, +1, longest)
    down = first_touch(bars, atr, levels, -1, longest)
    n = len(bars)
    out = np.full((n, 2, len(horizon_bars), len(tp_grid), len(sl_grid)), -1, np.int8)
    tp_up = up[:, [levels.index(v) for v in tp_grid]][:, :, None]
    tp_down = down[:, [levels.index(v) for v in tp_grid]][:, :, None]
    sl_down = down[:, [levels.index(v) for v in sl_grid]][:, None, :]
    sl_up = up[:, [levels.index(v) for v in sl_grid]][:, None, :]
    known_rows = np.arange(n)
    for k, h in enumerate(horizon_bars):
        known = (known_rows + h < n)[:, None, None]
        for side, (take, stop) in enumerate(((tp_up, sl_down), (tp_down, sl_up))):
            code = np.where(
                (stop <= h) & (stop <= take),
                STOP,
                np.where((take <= h) & (take < stop), TAKE_PROFIT, NEITHER),
            )
            out[:, side, k] = np.where(known, code, -1)
    return out
