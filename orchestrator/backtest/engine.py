"""Trade simulation in R multiples, compiled with numba so years of 5m bars take milliseconds.

Rules (prices per unit; sign = +1 long, -1 short; t is the signal bar):

* Signal: side[t] is decided on bar t's close, so the earliest possible fill is open[t+1]: no
  look-ahead. A row never trades when t is the last bar, sl_dist is not finite and > 0, tp_dist is
  NaN or <= 0 (+inf means "no target"), or horizon < 1.
* Entry: fill = open[t+1] * (1 + sign*slippage) (slippage is a fraction of price, against the
  trader). stop = fill - sign*sl_dist, target = fill + sign*tp_dist, risk (1R) = |fill - stop|;
  before fees a target hit is exactly tp_dist/sl_dist R.
* Exit scan over bars j = t+1 .. t+horizon, first match wins:
  1. gap, only for j > t+1 (on the entry bar the open is the fill itself): open[j] at or beyond
     the stop -> stop_loss at open[j]; at or beyond the target -> take_profit at open[j]. Either
     sets `gap`; a stop gap costs more than 1R.
  2. both levels inside [low[j], high[j]] -> stop_loss: the intrabar path is unknown, so assume
     the worst (as backtesting.py and vectorbt do, and as the labels in features/targets.py).
  3. the one level inside the range -> exit at that level.
  Nothing hit by bar t+horizon -> time_stop at close[t+horizon]; when the data ends first ->
  end_of_data at the last close.
* Exit slippage: market-type exits (stop, stop gap, time stop, end of data) fill
  exit * (1 - sign*slippage). Take-profit exits are resting limit orders, which never fill worse
  than their limit, so they fill at the level (or at the better gap open) without slippage.
* Fees: fee_rate per side as a fraction of notional, so R is net of fees and slippage:
  r = (sign*(exit - fill) - fee_rate*fill - fee_rate*exit) / risk.
* One position per call (i.e. per symbol): signals while a trade is open are ignored; after an exit
  on bar j the next trade can come from a signal on bar j's close (entry at open[j+1]).
  allow_overlap=True trades every valid signal independently.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum
from typing import Any, cast

import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd
from numba import njit  # type: ignore[import-untyped]

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
I8 = npt.NDArray[np.int8]
Bool = npt.NDArray[np.bool_]

# A fee or slippage this large is almost certainly bps or percent passed as a fraction.
MAX_RATE = 0.1


class ExitReason(IntEnum):
    TAKE_PROFIT = 0
    STOP_LOSS = 1
    TIME_STOP = 2
    END_OF_DATA = 3

    @property
    def label(self) -> str:
        return self.name.lower()


# Plain ints: numba freezes module globals into the compiled kernel.
_TAKE_PROFIT = int(ExitReason.TAKE_PROFIT)
_STOP_LOSS = int(ExitReason.STOP_LOSS)
_TIME_STOP = int(ExitReason.TIME_STOP)
_END_OF_DATA = int(ExitReason.END_OF_DATA)


class BacktestConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Costs and position rules; rates are fractions (0.0002 = 2 bps), not bps or percent."""

    fee_rate: float = 0.0  # per side, fraction of notional
    slippage: float = 0.0  # per fill, fraction of price, against the trader
    allow_overlap: bool = False  # True: every signal trades, even while another is open

    def __post_init__(self) -> None:
        for name in ("fee_rate", "slippage"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"{name} must be a number, got {type(value).__name__}")
            if not (math.isfinite(value) and 0.0 <= value < MAX_RATE):
                raise ValueError(
                    f"{name} must be a fraction in [0, {MAX_RATE}) (0.0002 = 2 bps), got {value!r}"
                )
        if not isinstance(self.allow_overlap, bool):
            kind = type(self.allow_overlap).__name__
            raise TypeError(f"allow_overlap must be a bool, got {kind}")


@dataclass(frozen=True, eq=False)
class Trades:
    """Closed trades in signal order, one row per trade across parallel arrays."""

    n_bars: int  # bars simulated, for exposure and per-bar equity
    signal_idx: I64  # bar whose close produced the signal
    entry_idx: I64  # signal_idx + 1: filled at this bar's open
    exit_idx: I64
    side: I8  # +1 long, -1 short
    fill: F64  # entry price after slippage
    exit_price: F64  # after slippage
    stop: F64
    target: F64  # +inf / -inf when the trade had no target
    risk: F64  # 1R in price units: |fill - stop|
    r: F64  # net of fees and slippage
    reason: I8  # ExitReason codes
    gap: Bool  # the exit filled at a bar's open beyond the level
    horizon_code: I64
    bars_held: I64  # exit_idx - entry_idx + 1: entry and exit bar both count

    def __len__(self) -> int:
        return int(self.r.size)

    def to_frame(self) -> pd.DataFrame:
        """A table for CLIs and reports, with the exit reason spelled out."""
        labels = np.array([reason.label for reason in ExitReason])
        return pd.DataFrame(
            {
                "signal_idx": self.signal_idx,
                "entry_idx": self.entry_idx,
                "exit_idx": self.exit_idx,
                "side": self.side,
                "fill": self.fill,
                "exit_price": self.exit_price,
                "stop": self.stop,
                "target": self.target,
                "risk": self.risk,
                "r": self.r,
                "reason": labels[self.reason],
                "gap": self.gap,
                "horizon_code": self.horizon_code,
                "bars_held": self.bars_held,
            }
        )


def _jit[F: Callable[..., Any]](func: F) -> F:
    """njit(cache=True), keeping the Python signature visible to mypy."""
    return cast(F, njit(cache=True)(func))


@_jit
def _simulate_kernel(
    open_: F64,
    high: F64,
    low: F64,
    close: F64,
    side: I8,
    tp_dist: F64,
    sl_dist: F64,
    horizon: I64,
    horizon_code: I64,
    fee_rate: float,
    slippage: float,
    allow_overlap: bool,
) -> tuple[I64, I64, I64, I8, F64, F64, F64, F64, F64, F64, I8, Bool, I64]:
    n_bars = close.size
    capacity = 0
    for t in range(n_bars):
        if side[t] != 0:
            capacity += 1
    signal_idx = np.empty(capacity, np.int64)
    entry_idx = np.empty(capacity, np.int64)
    exit_idx = np.empty(capacity, np.int64)
    sides = np.empty(capacity, np.int8)
    fills = np.empty(capacity, np.float64)
    exits = np.empty(capacity, np.float64)
    stops = np.empty(capacity, np.float64)
    targets = np.empty(capacity, np.float64)
    risks = np.empty(capacity, np.float64)
    rs = np.empty(capacity, np.float64)
    reasons = np.empty(capacity, np.int8)
    gaps = np.empty(capacity, np.bool_)
    codes = np.empty(capacity, np.int64)

    n = 0
    next_free = 0  # first bar whose signal may open a trade (one-position mode)
    for t in range(n_bars - 1):
        if side[t] == 0 or t < next_free:
            continue
        sl = sl_dist[t]
        tp = tp_dist[t]
        # Written so that NaN fails every test.
        if not (sl > 0.0 and sl < np.inf and tp > 0.0 and horizon[t] >= 1):
            continue
        sign = 1.0 if side[t] > 0 else -1.0
        entry = t + 1
        fill = open_[entry] * (1.0 + sign * slippage)
        stop = fill - sign * sl
        target = fill + sign * tp
        last = min(t + horizon[t], n_bars - 1)

        reason = -1
        gap = False
        exit_bar = last
        price = close[last]
        for j in range(entry, last + 1):
            if j > entry:
                o = open_[j]
                if sign * (o - stop) <= 0.0:
                    reason, gap, exit_bar, price = _STOP_LOSS, True, j, o
                    break
                if sign * (o - target) >= 0.0:
                    reason, gap, exit_bar, price = _TAKE_PROFIT, True, j, o
                    break
            if sign > 0.0:
                stop_hit = low[j] <= stop
                target_hit = high[j] >= target
            else:
                stop_hit = high[j] >= stop
                target_hit = low[j] <= target
            if stop_hit:
                reason, exit_bar, price = _STOP_LOSS, j, stop
                break
            if target_hit:
                reason, exit_bar, price = _TAKE_PROFIT, j, target
                break
        if reason < 0:
            reason = _TIME_STOP if t + horizon[t] <= n_bars - 1 else _END_OF_DATA
        if reason != _TAKE_PROFIT:
            price = price * (1.0 - sign * slippage)

        risk = abs(fill - stop)
        signal_idx[n] = t
        entry_idx[n] = entry
        exit_idx[n] = exit_bar
        sides[n] = side[t]
        fills[n] = fill
        exits[n] = price
        stops[n] = stop
        targets[n] = target
        risks[n] = risk
        rs[n] = (sign * (price - fill) - fee_rate * (fill + price)) / risk
        reasons[n] = reason
        gaps[n] = gap
        codes[n] = horizon_code[t]
        n += 1
        if not allow_overlap:
            next_free = exit_bar

    return (
        signal_idx[:n].copy(),
        entry_idx[:n].copy(),
        exit_idx[:n].copy(),
        sides[:n].copy(),
        fills[:n].copy(),
        exits[:n].copy(),
        stops[:n].copy(),
        targets[:n].copy(),
        risks[:n].copy(),
        rs[:n].copy(),
        reasons[:n].copy(),
        gaps[:n].copy(),
        codes[:n].copy(),
    )


def _prices(name: str, values: npt.ArrayLike) -> F64:
    array = np.ascontiguousarray(values, dtype=np.float64)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    bad = np.flatnonzero(~np.isfinite(array))
    if bad.size:
        raise ValueError(f"{name} has {bad.size} non-finite values (first at bar {bad[0]})")
    return array


def _per_bar(name: str, values: npt.ArrayLike, n_bars: int) -> npt.NDArray[Any]:
    """A scalar stands for every bar; an array must have one value per bar."""
    array = np.asarray(values)
    if array.ndim == 0:
        return np.full(n_bars, array)
    if array.shape != (n_bars,):
        raise ValueError(f"{name} must be a scalar or have shape ({n_bars},), got {array.shape}")
    return array


def _integers(name: str, values: npt.ArrayLike, n_bars: int) -> I64:
    array = _per_bar(name, values, n_bars)
    if array.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.int64)


def simulate(
    open_: npt.ArrayLike,
    high: npt.ArrayLike,
    low: npt.ArrayLike,
    close: npt.ArrayLike,
    *,
    side: npt.ArrayLike,
    tp_dist: npt.ArrayLike,
    sl_dist: npt.ArrayLike,
    horizon: npt.ArrayLike,
    horizon_code: npt.ArrayLike = 0,
    config: BacktestConfig | None = None,
) -> Trades:
    """Simulate the trades of one symbol's bars (see the module docstring for the rules).

    side, tp_dist, sl_dist, horizon and horizon_code are per bar (the signal bar) or scalars.
    """
    config = config or BacktestConfig()
    columns = {"open": open_, "high": high, "low": low, "close": close}
    o, h, lo, c = (_prices(name, values) for name, values in columns.items())
    n_bars = c.size
    if not o.size == h.size == lo.size == n_bars:
        raise ValueError(
            f"open/high/low/close lengths differ: {o.size}, {h.size}, {lo.size}, {n_bars}"
        )
    raw_side = _per_bar("side", side, n_bars)
    if not np.isin(raw_side, (-1, 0, 1)).all():
        raise ValueError("side must hold only +1 (long), -1 (short) or 0 (no signal)")
    result = _simulate_kernel(
        o,
        h,
        lo,
        c,
        np.ascontiguousarray(raw_side, dtype=np.int8),
        np.ascontiguousarray(_per_bar("tp_dist", tp_dist, n_bars), dtype=np.float64),
        np.ascontiguousarray(_per_bar("sl_dist", sl_dist, n_bars), dtype=np.float64),
        _integers("horizon", horizon, n_bars),
        _integers("horizon_code", horizon_code, n_bars),
        float(config.fee_rate),
        float(config.slippage),
        bool(config.allow_overlap),
    )
    signal_idx, entry_idx, exit_idx, sides, fills, exits = result[:6]
    stops, targets, risks, rs, reasons, gaps, codes = result[6:]
    return Trades(
        n_bars=n_bars,
        signal_idx=signal_idx,
        entry_idx=entry_idx,
        exit_idx=exit_idx,
        side=sides,
        fill=fills,
        exit_price=exits,
        stop=stops,
        target=targets,
        risk=risks,
        r=rs,
        reason=reasons,
        gap=gaps,
        horizon_code=codes,
        bars_held=exit_idx - entry_idx + 1,
    )
