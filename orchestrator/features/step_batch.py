"""One new bar for many feature states at once: incremental.py's recurrences as array operations.

A sweep steps thousands of states by their newest bar. One by one that is 46-71 µs a state
(`update()`, 1,024 to 10,000 states: the more states, the fewer stay in the caches), the largest
part of a 10,000-symbol sweep's features phase; together, 32-49 µs (docs/benchmarks.md). Here
the states' scalars and small windows are gathered into arrays, every recurrence runs once over
the batch with the scalar code's operations in its order (features/seed_batch.py's
kernels for the windows: left-to-right sums, Python's compensated `sum()`), and the results are
written back, so each state ends exactly as `update()` leaves it
(tests/features/test_step_batch.py compares them bit for bit, flat windows and zero ranges
included). Only states past every warm-up take this path; the rest step one by one.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

from orchestrator.features.incremental import (
    Bar,
    IncrementalFeatures,
    Ohlcv,
    _Indicators,
    _time_features,
    checked_bar,
)
from orchestrator.features.indicators import PARAMS, RETURN_LAGS
from orchestrator.features.seed_batch import _div, _left_sum, _python_sum, bands
from orchestrator.features.seed_batch import _squared_deviations as squared_deviations

F64 = npt.NDArray[np.float64]
_ATR, _RSI, _ADX = int(PARAMS["atr"]), int(PARAMS["rsi"]), int(PARAMS["adx"])
_BB, _BB_DEV = int(PARAMS["bb_length"]), float(PARAMS["bb_std"])
_VOLUME, _REALIZED = int(PARAMS["volume_z"]), int(PARAMS["realized_vol"])
_SMOOTH, _D = int(PARAMS["stoch_smooth"]), int(PARAMS["stoch_d"])


def steady(ind: _Indicators) -> bool:
    """Every recurrence past its warm-up branch and every window full: the one branch the
    batch step computes."""
    macd, dmi = ind.macd, ind.dmi
    return (
        len(ind.log_close) == ind.log_close.maxlen
        and ind.atr._n > ind.atr._length
        and ind.rsi._n > ind.rsi._length
        and macd._n >= macd._slow
        and macd._signal._n >= macd._signal._length
        and all(e._n >= e._length for e in (ind.ema_fast, ind.ema_mid, ind.ema_slow))
        and dmi._n >= 2 * dmi._length
        and len(ind.bb._window) == ind.bb._length
        and len(ind.stoch._highs) == ind.stoch._k
        and len(ind.stoch._slow_k._window) == ind.stoch._slow_k._length
        and len(ind.stoch._slow_d._window) == ind.stoch._slow_d._length
        and ind.volume._since_nan >= ind.volume._length - 1
        and ind.realized._since_nan >= ind.realized._length - 1
    )


def step_together(steps: Sequence[tuple[IncrementalFeatures, Bar]]) -> list[ValueError | None]:
    """`state.update(*bar)` for each pair; returns, in order, the ValueError update() would
    have raised (that state is left as it was) or None."""
    errors: list[ValueError | None] = [None] * len(steps)
    batch: list[tuple[int, IncrementalFeatures, pd.Timestamp, Ohlcv]] = []
    alone: list[tuple[int, IncrementalFeatures, Bar]] = []
    for i, (state, bar) in enumerate(steps):
        try:
            stamp, values = checked_bar(state, bar)
        except ValueError as exc:
            errors[i] = exc
            continue
        # Positive prices and a volume whose log1p is finite: the scalar code's other branches
        # (NaN and infinite logs) stay with it.
        if steady(state.indicators) and min(values[:4]) > 0.0 and values[4] >= 0.0:
            batch.append((i, state, stamp, values))
        else:
            alone.append((i, state, bar))
    for i, state, bar in alone:
        try:
            state.update(*bar)
        except ValueError as exc:  # pragma: no cover - checked above
            errors[i] = exc
    by_spec: dict[int, list[tuple[IncrementalFeatures, pd.Timestamp, Ohlcv]]] = {}
    for _, state, stamp, values in batch:
        by_spec.setdefault(id(state.spec), []).append((state, stamp, values))
    for group in by_spec.values():
        _step_group(group)
    return errors


def _step_group(group: list[tuple[IncrementalFeatures, pd.Timestamp, Ohlcv]]) -> None:
    """Steady states of one spec by one checked bar each: gathered, computed, written back."""
    states = [state for state, _, _ in group]
    inds = [state.indicators for state in states]
    bars = np.array([values for _, _, values in group], np.float64)
    o, h, low, c, v = bars.T
    log_c = np.log(c)
    log1p_v = np.log1p(v)
    cols: list[F64] = []

    logs = np.array([[ind.log_close[-lag] for lag in RETURN_LAGS] for ind in inds])
    previous = np.array([ind.log_close[-1] for ind in inds])
    cols += list((log_c[:, np.newaxis] - logs).T)

    # ATR (Wilder), RSI (Wilder), the true range from the previous close.
    atr_prev, rsi_gain, rsi_loss, rsi_prev = _gathered(
        inds, lambda d: (d.atr.value, d.rsi._gain, d.rsi._loss, d.rsi._prev)
    )
    prev_close = np.array([ind.atr._prev_close for ind in inds])
    tr = h - low
    up, down = np.abs(prev_close - h), np.abs(prev_close - low)
    tr = np.where(up > tr, up, tr)
    tr = np.where(down > tr, down, tr)
    atr = ((atr_prev * (_ATR - 1)) + tr) / _ATR
    change = c - rsi_prev
    loss, gain = rsi_loss * (_RSI - 1), rsi_gain * (_RSI - 1)
    falls = change < 0
    loss = np.where(falls, loss - change, loss)
    gain = np.where(falls, gain, gain + change)
    loss, gain = loss / _RSI, gain / _RSI
    total = gain + loss
    with np.errstate(divide="ignore", invalid="ignore"):
        rsi = np.where(total != 0.0, 100.0 * (gain / total), 0.0)
    cols.append(rsi / 100.0 - 0.5)

    # MACD and its signal, then the three EMAs.
    macd0 = inds[0].macd
    slow_ema, fast_ema, signal = _gathered(
        inds, lambda d: (d.macd.slow_ema, d.macd.fast_ema, d.macd._signal.value)
    )
    slow_ema = ((c - slow_ema) * macd0._k_slow) + slow_ema
    fast_ema = ((c - fast_ema) * macd0._k_fast) + fast_ema
    line = fast_ema - slow_ema
    signal = ((line - signal) * macd0._signal._k) + signal
    cols += [_div(line, atr), _div(signal, atr), _div(line - signal, atr), _div(atr, c)]
    cols += _bollinger(inds, c)
    emas = _gathered(inds, lambda d: (d.ema_fast.value, d.ema_mid.value, d.ema_slow.value))
    ks = [inds[0].ema_fast._k, inds[0].ema_mid._k, inds[0].ema_slow._k]
    emas = [((c - value) * k) + value for value, k in zip(emas, ks, strict=True)]
    cols += [_div(c - value, atr) for value in emas]

    dmi = _dmi(inds, h, low, c)
    cols += [dmi[0] / 100.0, (dmi[1] - dmi[2]) / 100.0]
    stoch = _stochastic(inds, h, low, c)
    cols += [stoch[0] / 100.0 - 0.5, stoch[1] / 100.0 - 0.5]
    mean, std = _rolling_std([ind.volume._window for ind in inds], log1p_v, _VOLUME)
    cols.append((log1p_v - mean) / (std + 1e-9))
    cols.append(_div(h - low, atr))
    realized = [ind.realized._window for ind in inds]
    cols.append(_rolling_std(realized, log_c - previous, _REALIZED)[1])
    cols.append(_div(c - o, atr))
    times = np.array([_time_features(stamp) for _, stamp, _ in group])
    raw = np.column_stack([*cols, times, atr])

    # Written back: what each scalar update() leaves (as lists: a float out of a list is
    # cheaper than one out of an array).
    new_log, new_atr, new_gain, new_loss, new_rsi = (
        x.tolist() for x in (log_c, atr, gain, loss, rsi)
    )
    new_slow, new_fast, new_signal = slow_ema.tolist(), fast_ema.tolist(), signal.tolist()
    new_emas = [value.tolist() for value in emas]
    new_raw_k, new_slow_k = stoch[2].tolist(), stoch[0].tolist()
    new_volume, new_return = log1p_v.tolist(), (log_c - previous).tolist()
    for k, (state, _, values) in enumerate(group):
        o_k, h_k, low_k, c_k, _ = values
        ind = inds[k]
        ind.log_close.append(new_log[k])
        ind.atr.value, ind.atr._prev_close = new_atr[k], c_k
        ind.atr._n += 1
        rsi_k = ind.rsi
        rsi_k._gain, rsi_k._loss, rsi_k._prev, rsi_k.value = (
            new_gain[k],
            new_loss[k],
            c_k,
            new_rsi[k],
        )
        rsi_k._n += 1
        ind.macd.slow_ema, ind.macd.fast_ema = new_slow[k], new_fast[k]
        ind.macd._signal.value = new_signal[k]  # EMAs past their seed count no more bars
        ind.ema_fast.value, ind.ema_mid.value, ind.ema_slow.value = (
            new_emas[0][k],
            new_emas[1][k],
            new_emas[2][k],
        )
        ind.bb._window.append(c_k)
        stoch_k = ind.stoch
        stoch_k._highs.append(h_k)
        stoch_k._lows.append(low_k)
        stoch_k._slow_k._window.append(new_raw_k[k])
        stoch_k._slow_d._window.append(new_slow_k[k])
        ind.volume._window.append(new_volume[k])
        ind.volume._since_nan += 1
        ind.realized._window.append(new_return[k])
        ind.realized._since_nan += 1
        d = ind.dmi
        d._minus, d._plus, d._tr, d.adx = dmi[3][k]
        d._prev_high, d._prev_low, d._prev_close = h_k, low_k, c_k
        d._n += 1
        state.baseline.update(o_k, h_k, low_k, c_k)
    IncrementalFeatures.store_many(
        states, [stamp for _, stamp, _ in group], [values for _, _, values in group], raw
    )


def _stacked(windows: Sequence[Iterable[float]], length: int) -> F64:
    """(n, length) from n full windows: one pass over their values (np.array reads a list of
    deques item by item through the sequence protocol, several times slower)."""
    flat = np.fromiter(itertools.chain.from_iterable(windows), np.float64, len(windows) * length)
    return flat.reshape(len(windows), length)


def _gathered(
    inds: list[_Indicators], pick: Callable[[_Indicators], tuple[float, ...]]
) -> list[F64]:
    """Columns of the values `pick(ind)` returns for each state (one tuple each)."""
    rows = np.array([pick(ind) for ind in inds], np.float64)
    return list(rows.T)


def _bollinger(inds: list[_Indicators], c: F64) -> list[F64]:
    windows = _stacked([ind.bb._window for ind in inds], _BB)[:, 1:]
    return bands(np.concatenate([windows, c[:, np.newaxis]], axis=1), c, _BB, _BB_DEV)


def _dmi(
    inds: list[_Indicators], h: F64, low: F64, c: F64
) -> tuple[F64, F64, F64, list[tuple[float, float, float, float]]]:
    """ADX, +DI, -DI of the new bar, and each state's new (minus, plus, tr, adx)."""
    n = _ADX
    minus, plus, tr_sum, adx, prev_high, prev_low, prev_close = _gathered(
        inds,
        lambda d: (
            d.dmi._minus, d.dmi._plus, d.dmi._tr, d.dmi.adx,
            d.dmi._prev_high, d.dmi._prev_low, d.dmi._prev_close,
        ),
    )  # fmt: skip
    diff_plus, diff_minus = h - prev_high, prev_low - low
    tr = h - low
    up, down = np.abs(h - prev_close), np.abs(low - prev_close)
    tr = np.where(up > tr, up, tr)
    tr = np.where(down > tr, down, tr)
    minus, plus = minus - minus / n, plus - plus / n
    takes_minus = (diff_minus > 0) & (diff_plus < diff_minus)
    takes_plus = ~takes_minus & (diff_plus > 0) & (diff_plus > diff_minus)
    minus = np.where(takes_minus, minus + diff_minus, minus)
    plus = np.where(takes_plus, plus + diff_plus, plus)
    tr_sum = (tr_sum - (tr_sum / n)) + tr
    with np.errstate(divide="ignore", invalid="ignore"):
        minus_di = 100.0 * (minus / tr_sum)
        plus_di = 100.0 * (plus / tr_sum)
        total = minus_di + plus_di
        dx = 100.0 * (np.abs(minus_di - plus_di) / total)
        adx = np.where((tr_sum != 0.0) & (total != 0.0), ((adx * (n - 1)) + dx) / n, adx)
        flat = tr_sum == 0.0
        plus_out = np.where(flat, 0.0, 100.0 * plus / tr_sum)
        minus_out = np.where(flat, 0.0, 100.0 * minus / tr_sum)
    fields = list(zip(minus.tolist(), plus.tolist(), tr_sum.tolist(), adx.tolist(), strict=True))
    return adx, plus_out, minus_out, fields


def _stochastic(inds: list[_Indicators], h: F64, low: F64, c: F64) -> tuple[F64, F64, F64]:
    """Slow %K, %D and the raw %K of the new bar."""
    length = inds[0].stoch._k
    highs = _stacked([ind.stoch._highs for ind in inds], length)[:, 1:]
    lows = _stacked([ind.stoch._lows for ind in inds], length)[:, 1:]
    lowest = np.minimum(lows.min(axis=1), low)
    diff = (np.maximum(highs.max(axis=1), h) - lowest) / 100.0
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where(diff != 0.0, (c - lowest) / diff, 0.0)
    smooth_k = _stacked([ind.stoch._slow_k._window for ind in inds], _SMOOTH)[:, 1:]
    slow_k = _left_sum(np.concatenate([smooth_k, raw[:, np.newaxis]], axis=1)) / _SMOOTH
    smooth_d = _stacked([ind.stoch._slow_d._window for ind in inds], _D)[:, 1:]
    slow_d = _left_sum(np.concatenate([smooth_d, slow_k[:, np.newaxis]], axis=1)) / _D
    return slow_k, slow_d, raw


def _rolling_std(windows: Sequence[Iterable[float]], x: F64, length: int) -> tuple[F64, F64]:
    values = _stacked(windows, length)[:, 1:]
    values = np.concatenate([values, x[:, np.newaxis]], axis=1)
    mean = _python_sum(values) / length
    total, flat = squared_deviations(values, mean)
    return np.where(flat, x, mean), np.where(flat, 0.0, np.sqrt(total / (length - 1)))
