"""Seeding many feature states at once: incremental.py's recurrences run across symbols.

`IncrementalFeatures.seed` replays a seed tail (664 bars) through every indicator in Python:
about 14 ms a state, so the first start of a replica in front of 10,000 symbols spends over two
minutes there on one core (bench-scale). Here the same recurrences run once per bar over the
arrays of many symbols, each operation elementwise in the same order as the scalar code (the
same IEEE double operations, so the same numbers); only the fixed windows (Bollinger,
stochastic, rolling std), which need no recurrence, are computed for the stored rows alone.
Each symbol's final values are then written into an ordinary `IncrementalFeatures`, which steps
on bar by bar as before. tests/features/test_seed_batch.py steps both kinds of state side by side
and compares them with the batch pipeline.

The fields written below are those of incremental.py's recurrence classes; a field added there
without its counterpart here shows in those tests (the states part ways once they step).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from orchestrator.features.incremental import F64, IncrementalFeatures
from orchestrator.features.indicators import (
    CALENDAR_NAMES,
    PARAMS,
    RETURN_LAGS,
    calendar_features,
)
from orchestrator.features.online import NotEnoughHistoryError, required_bars, seed_bars
from orchestrator.features.spec import FeatureSpec

OHLCV = ("open", "high", "low", "close", "volume")
_EPSILON = float(np.finfo(np.float64).eps)
# The longest fixed window read before the first stored row (volume_z's 48 values, the
# stochastic's 14 + 2 + 2): the stored rows must start after it for the windows below.
_WARM_ROWS = max(int(PARAMS["volume_z"]), int(PARAMS["stoch_k"]) + 4, max(RETURN_LAGS)) + 1

Seeded = IncrementalFeatures | Exception  # a frame's state, or why it has none


def seed_states(frames: Sequence[pd.DataFrame], spec: FeatureSpec) -> list[Seeded]:
    """`IncrementalFeatures.seed(frame, spec)` for every frame, computed together; a frame with
    too few bars gets its NotEnoughHistoryError in its place. Frames with a non-finite or
    non-positive value are seeded one by one, as the scalar code treats them (an error there is
    that frame's answer, not the batch's)."""
    need = required_bars(spec)
    out: list[Seeded | None] = [None] * len(frames)
    batch: list[int] = []
    histories: list[F64] = []  # each frame's last seed_bars() bars, OHLCV columns
    history = seed_bars(spec)
    for i, frame in enumerate(frames):
        if len(frame) < need:
            out[i] = NotEnoughHistoryError(len(frame), need)
            continue
        # The store's frames hold exactly these columns: one array without a column lookup.
        columns = frame if tuple(frame.columns) == OHLCV else frame[list(OHLCV)]
        values = columns.to_numpy(np.float64)[-history:]
        tail = values[-need:]
        if np.isfinite(tail).all() and (tail[:, :4] > 0).all() and (tail[:, 4] >= 0).all():
            batch.append(i)
            histories.append(values)
        else:
            try:
                out[i] = IncrementalFeatures.seed(frame, spec)
            except Exception as exc:
                out[i] = exc
    if batch:
        states = _seed_together(histories, [frames[i].index for i in batch], spec)
        for i, state in zip(batch, states, strict=True):
            out[i] = state
    seeded: list[Seeded] = []
    for answer in out:
        if answer is None:
            raise RuntimeError("seed_states left a frame without an answer")
        seeded.append(answer)
    return seeded


def _seed_together(
    histories: list[F64], indexes: list[pd.Index], spec: FeatureSpec
) -> list[IncrementalFeatures]:
    """histories: per symbol, (bars, OHLCV) of at least required_bars() bars."""
    bars = required_bars(spec)
    tails = np.stack([values[-bars:] for values in histories])  # (K symbols, T bars, OHLCV)
    o, h, low, c, v = (np.ascontiguousarray(tails[:, :, j]) for j in range(5))
    count = len(histories)
    states = [IncrementalFeatures(spec) for _ in range(count)]
    stored = bars - states[0].ring_size  # rows older than this never reach a window
    if stored < _WARM_ROWS:
        raise ValueError("the seed tail is too short for the batch seeder's windows")
    log_c, log1p_v = np.log(c), np.log1p(v)
    rec = _Recurrences(count, stored, bars)
    rec.run(h, low, c)
    stochastic, raw_k, slow_k = _stochastic(h, low, c, stored)
    rows = _rows(rec, o, h, low, c, log_c, log1p_v, stored, stochastic)
    times = [pd.DatetimeIndex(index[-bars:]) for index in indexes]
    rows = np.concatenate([rows, _time_features(times, stored)], axis=2)
    raw = np.concatenate([rows, rec.atr_rows[:, :, np.newaxis]], axis=2)
    features = raw[:, :, :-1]
    features[~np.isfinite(features)] = np.nan  # compute_features: inf -> NaN (not atr)
    ring = states[0].normalise_rows(features)
    finals = _Finals(rec, h, low, c, log_c, log1p_v, raw_k, slow_k)
    for k, state in enumerate(states):
        last = tails[k, -1].tolist()
        state.adopt_seed(
            ring[k].copy(),
            raw[k, -1].copy(),
            times[k][-1],
            (last[0], last[1], last[2], last[3], last[4]),
            bars,
        )
        values = histories[k]
        state.baseline.extend(values[:, 0], values[:, 1], values[:, 2], values[:, 3])
        finals.write(k, state)
    return states


def _div(numerator: F64, denominator: F64) -> F64:
    """incremental._div elementwise: NaN where the denominator is exactly 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out: F64 = np.where(denominator != 0.0, numerator / denominator, np.nan)
    return out


def _left_sum(windows: F64) -> F64:
    """Left-to-right sum over the last axis, as incremental._sum adds (Python's own sum()
    compensates: _python_sum)."""
    total = np.zeros(windows.shape[:-1])
    for j in range(windows.shape[-1]):
        total = total + windows[..., j]
    return total


class _Recurrences:
    """ATR, RSI, MACD, the three EMAs and the DMI over every bar, across symbols; the values of
    the stored rows are kept as (K, rows) arrays, the end state as (K,) arrays."""

    def __init__(self, count: int, stored: int, bars: int) -> None:
        self.stored = stored
        shape = (count, bars - stored)
        self.atr_rows, self.rsi_rows = np.full(shape, np.nan), np.full(shape, np.nan)
        self.macd_rows = [np.full(shape, np.nan) for _ in range(3)]
        self.ema_rows = [np.full(shape, np.nan) for _ in range(3)]
        self.dmi_rows = [np.full(shape, np.nan) for _ in range(3)]
        zero: F64 = np.zeros(count)
        nan: F64 = np.full(count, np.nan)
        self.atr_sum: F64 = zero.copy()
        self.atr: F64 = nan.copy()
        self.gain: F64 = zero.copy()
        self.loss: F64 = zero.copy()
        self.rsi: F64 = nan.copy()
        self.slow_sum: F64 = zero.copy()
        self.fast_ema: F64 = nan.copy()
        self.slow_ema: F64 = nan.copy()
        self.signal_sum: F64 = zero.copy()
        self.signal: F64 = nan.copy()
        self.ema_sums: list[F64] = [zero.copy() for _ in range(3)]
        self.emas: list[F64] = [nan.copy() for _ in range(3)]
        self.minus: F64 = zero.copy()
        self.plus: F64 = zero.copy()
        self.tr: F64 = zero.copy()
        self.dx_sum: F64 = zero.copy()
        self.adx: F64 = nan.copy()
        self.signal_count = 0

    def run(self, h: F64, low: F64, c: F64) -> None:
        p = PARAMS
        atr_n, rsi_n, dmi_n = int(p["atr"]), int(p["rsi"]), int(p["adx"])
        fast, slow, signal_n = int(p["macd_fast"]), int(p["macd_slow"]), int(p["macd_signal"])
        fast, slow = min(fast, slow), max(fast, slow)
        k_fast, k_slow, k_signal = 2.0 / (fast + 1), 2.0 / (slow + 1), 2.0 / (signal_n + 1)
        ema_ns = [int(p[f"ema_{name}"]) for name in ("fast", "mid", "slow")]
        ema_ks = [2.0 / (n + 1) for n in ema_ns]
        signal_count = 0
        for t in range(c.shape[1]):
            ht, lt, ct = h[:, t], low[:, t], c[:, t]
            row = t - self.stored
            if t > 0:
                pc = c[:, t - 1]
                tr = np.maximum(np.maximum(ht - lt, np.abs(pc - ht)), np.abs(pc - lt))
                self._atr(t, atr_n, tr)
                self._rsi(t, rsi_n, ct - pc)
                self._dmi(t, dmi_n, ht - h[:, t - 1], low[:, t - 1] - lt, tr)
            # MACD: both EMAs seeded on the slow EMA's first bar, the signal on the line.
            line = None
            if t < slow:
                self.slow_sum = self.slow_sum + ct
                if t == slow - 1:
                    self.slow_ema = self.slow_sum / slow
                    self.fast_ema = _left_sum(c[:, t - fast + 1 : t + 1]) / fast
                    line = self.fast_ema - self.slow_ema
            else:
                self.slow_ema = ((ct - self.slow_ema) * k_slow) + self.slow_ema
                self.fast_ema = ((ct - self.fast_ema) * k_fast) + self.fast_ema
                line = self.fast_ema - self.slow_ema
            if line is not None:
                if signal_count >= signal_n:
                    self.signal = ((line - self.signal) * k_signal) + self.signal
                else:
                    signal_count += 1
                    self.signal_sum = self.signal_sum + line
                    if signal_count == signal_n:
                        self.signal = self.signal_sum / signal_n
            for j, (n, k) in enumerate(zip(ema_ns, ema_ks, strict=True)):
                if t < n:
                    self.ema_sums[j] = self.ema_sums[j] + ct
                    if t == n - 1:
                        self.emas[j] = self.ema_sums[j] / n
                else:
                    self.emas[j] = ((ct - self.emas[j]) * k) + self.emas[j]
            if row >= 0:
                self.atr_rows[:, row], self.rsi_rows[:, row] = self.atr, self.rsi
                if line is not None and signal_count >= signal_n:
                    for out, value in zip(
                        self.macd_rows, (line, self.signal, line - self.signal), strict=True
                    ):
                        out[:, row] = value
                for j in range(3):
                    self.ema_rows[j][:, row] = self.emas[j]
        self.signal_count = signal_count

    def _atr(self, t: int, n: int, tr: F64) -> None:
        if t > n:
            self.atr = ((self.atr * (n - 1)) + tr) / n
        else:
            self.atr_sum = self.atr_sum + tr
            if t == n:
                self.atr = self.atr_sum / n

    def _rsi(self, t: int, n: int, change: F64) -> None:
        gain, loss = self.gain, self.loss
        if t > n:
            loss, gain = loss * (n - 1), gain * (n - 1)
        falls = change < 0
        loss = np.where(falls, loss - change, loss)
        gain = np.where(falls, gain, gain + change)
        if t >= n:
            loss, gain = loss / n, gain / n
            total = gain + loss
            with np.errstate(divide="ignore", invalid="ignore"):
                self.rsi = np.where(total != 0.0, 100.0 * (gain / total), 0.0)
        self.gain, self.loss = gain, loss

    def _dmi(self, t: int, n: int, diff_plus: F64, diff_minus: F64, tr: F64) -> None:
        minus, plus = self.minus, self.plus
        if t >= n:
            minus, plus = minus - minus / n, plus - plus / n
        takes_minus = (diff_minus > 0) & (diff_plus < diff_minus)
        takes_plus = ~takes_minus & (diff_plus > 0) & (diff_plus > diff_minus)
        minus = np.where(takes_minus, minus + diff_minus, minus)
        plus = np.where(takes_plus, plus + diff_plus, plus)
        if t < n:
            self.tr = self.tr + tr
        else:
            self.tr = (self.tr - (self.tr / n)) + tr
            with np.errstate(divide="ignore", invalid="ignore"):
                minus_di = 100.0 * (minus / self.tr)
                plus_di = 100.0 * (plus / self.tr)
                total = minus_di + plus_di
                dx = 100.0 * (np.abs(minus_di - plus_di) / total)
            counts = (self.tr != 0.0) & (total != 0.0)
            if t <= 2 * n - 1:
                self.dx_sum = np.where(counts, self.dx_sum + dx, self.dx_sum)
            else:
                self.adx = np.where(counts, ((self.adx * (n - 1)) + dx) / n, self.adx)
            if t == 2 * n - 1:
                self.adx = self.dx_sum / n
        self.minus, self.plus = minus, plus
        row = t - self.stored
        if row >= 0 and t >= n:
            flat = self.tr == 0.0
            with np.errstate(divide="ignore", invalid="ignore"):
                plus_out = np.where(flat, 0.0, 100.0 * plus / self.tr)
                minus_out = np.where(flat, 0.0, 100.0 * minus / self.tr)
            for out, value in zip(self.dmi_rows, (self.adx, plus_out, minus_out), strict=True):
                out[:, row] = value


def _rows(
    rec: _Recurrences,
    o: F64,
    h: F64,
    low: F64,
    c: F64,
    log_c: F64,
    log1p_v: F64,
    stored: int,
    stochastic: list[F64],
) -> F64:
    """The feature values of the stored rows (K, rows, features up to body_atr), as
    _Indicators.step lists them."""
    p = PARAMS
    cols: list[F64] = []
    at = slice(stored, None)
    close, atr = c[:, at], rec.atr_rows
    for lag in RETURN_LAGS:
        cols.append(log_c[:, at] - log_c[:, stored - lag : c.shape[1] - lag])
    cols.append(rec.rsi_rows / 100.0 - 0.5)
    cols += [_div(values, atr) for values in rec.macd_rows]
    cols.append(_div(atr, close))
    cols += _bollinger(c, stored, int(p["bb_length"]), float(p["bb_std"]))
    cols += [_div(close - ema, atr) for ema in rec.ema_rows]
    adx, plus_di, minus_di = rec.dmi_rows
    cols += [adx / 100.0, (plus_di - minus_di) / 100.0]
    cols += stochastic
    mean, std = _rolling_std(log1p_v, stored, int(p["volume_z"]))
    cols.append((log1p_v[:, at] - mean) / (std + 1e-9))
    cols.append(_div(h[:, at] - low[:, at], atr))
    returns = np.diff(log_c, axis=1, prepend=np.nan)
    cols.append(_rolling_std(returns, stored, int(p["realized_vol"]))[1])
    cols.append(_div(close - o[:, at], atr))
    return np.stack(cols, axis=2)


def _windows(values: F64, stored: int, length: int) -> F64:
    """(K, rows, length): the `length` values up to each stored row, oldest first."""
    return sliding_window_view(values[:, stored - length + 1 :], length, axis=1)


def _squared_deviations(windows: F64, centre: F64) -> tuple[F64, F64]:
    """Sum of (x - centre)^2 over each window, left to right as the scalar loops add, and
    whether the window is flat (the scalar code answers exactly 0 there)."""
    total = np.zeros(centre.shape)
    for j in range(windows.shape[-1]):
        d = windows[..., j] - centre
        total = total + d * d
    return total, windows.max(axis=-1) == windows.min(axis=-1)


def _bollinger(c: F64, stored: int, length: int, dev: float) -> list[F64]:
    return bands(_windows(c, stored, length), c[:, stored:], length, dev)


def bands(windows: F64, close: F64, length: int, dev: float) -> list[F64]:
    """%B and bandwidth of each window of closes ending at `close` (incremental._Bbands
    elementwise; features/step_batch.py uses it too)."""
    mid = _left_sum(windows) / length
    total, flat = _squared_deviations(windows, mid)
    std = np.where(flat, 0.0, np.sqrt(total / length))
    deviation = std * dev
    upper, lower = mid + deviation, mid - deviation
    width = upper - lower
    width = np.where(width == 0.0, _EPSILON, width)
    above = close - lower
    above = np.where(above == 0.0, _EPSILON, above)
    return [above / width, 100 * width / mid / 100.0]


def _stochastic(h: F64, low: F64, c: F64, stored: int) -> tuple[list[F64], F64, F64]:
    """%K (the SMA of raw %K) and %D (the SMA of %K) columns of the stored rows, then the last
    raw %K and %K values, which the state's two smoothing windows hold."""
    p = PARAMS
    length, smooth, d = int(p["stoch_k"]), int(p["stoch_smooth"]), int(p["stoch_d"])
    back = smooth - 1 + d - 1  # %D at a row reads %K of d - 1 rows before, which reads raw %K
    lowest = _windows(low, stored - back, length).min(axis=2)
    diff = (_windows(h, stored - back, length).max(axis=2) - lowest) / 100.0
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.where(diff != 0.0, (c[:, stored - back :] - lowest) / diff, 0.0)
    slow_k = _left_sum(sliding_window_view(raw, smooth, axis=1)) / smooth
    slow_d = _left_sum(sliding_window_view(slow_k, d, axis=1)) / d
    columns = [slow_k[:, d - 1 :] / 100.0 - 0.5, slow_d / 100.0 - 0.5]
    return columns, raw[:, -smooth:], slow_k[:, -d:]


def _python_sum(windows: F64) -> F64:
    """Python's sum() over the last axis: from 3.12 it adds floats with Neumaier's
    compensation (CPython's builtin_sum_impl), which _RollingStd's mean goes through."""
    total = np.zeros(windows.shape[:-1])
    compensation = np.zeros(windows.shape[:-1])
    for j in range(windows.shape[-1]):
        x = windows[..., j]
        t = total + x
        compensation = compensation + np.where(
            np.abs(total) >= np.abs(x), (total - t) + x, (x - t) + total
        )
        total = t
    return np.where((compensation != 0.0) & np.isfinite(compensation), total + compensation, total)


def _rolling_std(values: F64, stored: int, length: int) -> tuple[F64, F64]:
    """incremental._RollingStd over the stored rows: (mean, std) with ddof=1, (x, 0) on a flat
    window; the rows hold no NaN once `length` values have passed (checked by the caller's
    _WARM_ROWS)."""
    windows = _windows(values, stored, length)
    mean = _python_sum(windows) / length
    total, flat = _squared_deviations(windows, mean)
    newest = values[:, stored:]
    return np.where(flat, newest, mean), np.where(flat, 0.0, np.sqrt(total / (length - 1)))


def _time_features(times: list[pd.DatetimeIndex], stored: int) -> F64:
    """The calendar features of each stored row's open time: (K, rows, 4)."""
    zone = times[0].tz
    if any(t.tz != zone for t in times):  # mixed zones: each frame read in its own
        return np.stack([_time_features([t], stored)[0] for t in times])
    index = pd.DatetimeIndex(np.concatenate([t[stored:].asi8 for t in times]))
    index = index.tz_localize("UTC").tz_convert(zone) if zone is not None else index
    return calendar_features(index).reshape(len(times), -1, len(CALENDAR_NAMES))


class _Finals:
    """Each symbol's end state, as Python floats, written into its IncrementalFeatures."""

    def __init__(
        self,
        rec: _Recurrences,
        h: F64,
        low: F64,
        c: F64,
        log_c: F64,
        log1p_v: F64,
        raw_k: F64,
        slow_k: F64,
    ) -> None:
        p = PARAMS
        self.bars = c.shape[1]
        self.rec = {
            name: getattr(rec, name).tolist()
            for name in (
                "atr_sum",
                "atr",
                "gain",
                "loss",
                "rsi",
                "slow_sum",
                "fast_ema",
                "slow_ema",
                "signal_sum",
                "signal",
                "minus",
                "plus",
                "tr",
                "dx_sum",
                "adx",
            )
        }
        self.ema_sums = [s.tolist() for s in rec.ema_sums]
        self.emas = [e.tolist() for e in rec.emas]
        self.signal_count = rec.signal_count
        stoch_k = int(p["stoch_k"])
        self.log_close = log_c[:, -(max(RETURN_LAGS) + 1) :].tolist()
        self.closes = c[:, -int(p["bb_length"]) :].tolist()
        self.highs, self.lows = h[:, -stoch_k:].tolist(), low[:, -stoch_k:].tolist()
        self.prev = (h[:, -1].tolist(), low[:, -1].tolist(), c[:, -1].tolist())
        self.raw_k, self.slow_k = raw_k.tolist(), slow_k.tolist()
        self.volumes = log1p_v[:, -int(p["volume_z"]) :].tolist()
        returns = log_c[:, -int(p["realized_vol"]) :] - log_c[:, -int(p["realized_vol"]) - 1 : -1]
        self.returns = returns.tolist()

    def write(self, k: int, state: IncrementalFeatures) -> None:
        r = {name: values[k] for name, values in self.rec.items()}
        ind = state.indicators
        bars = self.bars
        ind.log_close = deque(self.log_close[k], maxlen=ind.log_close.maxlen)
        atr = ind.atr
        atr._n, atr._sum, atr._prev_close, atr.value = bars, r["atr_sum"], self.prev[2][k], r["atr"]
        rsi = ind.rsi
        rsi._n, rsi._gain, rsi._loss = bars, r["gain"], r["loss"]
        rsi._prev, rsi.value = self.prev[2][k], r["rsi"]
        macd = ind.macd
        macd._n, macd._slow_sum = macd._slow, r["slow_sum"]
        macd.fast_ema, macd.slow_ema = r["fast_ema"], r["slow_ema"]
        signal = macd._signal
        signal._n, signal._sum, signal.value = self.signal_count, r["signal_sum"], r["signal"]
        ind.bb._window.extend(self.closes[k])
        for ema, total, value in zip(
            (ind.ema_fast, ind.ema_mid, ind.ema_slow),
            (s[k] for s in self.ema_sums),
            (e[k] for e in self.emas),
            strict=True,
        ):
            ema._n, ema._sum, ema.value = ema._length, total, value
        dmi = ind.dmi
        dmi._n, dmi._minus, dmi._plus = bars, r["minus"], r["plus"]
        dmi._tr, dmi._dx_sum, dmi.adx = r["tr"], r["dx_sum"], r["adx"]
        dmi._prev_high, dmi._prev_low, dmi._prev_close = (side[k] for side in self.prev)
        stoch = ind.stoch
        stoch._highs.extend(self.highs[k])
        stoch._lows.extend(self.lows[k])
        stoch._slow_k._window.extend(self.raw_k[k])
        stoch._slow_d._window.extend(self.slow_k[k])
        ind.volume._window.extend(self.volumes[k])
        ind.volume._since_nan = bars
        ind.realized._window.extend(self.returns[k])
        ind.realized._since_nan = bars - 1  # the first bar's return is NaN
