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
