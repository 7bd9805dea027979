"""Serving features in O(1) per bar: TA-Lib's recurrences carried forward instead of recomputed.

`inputs_for_latest` recomputes every indicator over a LOOKBACK_BARS tail for each new bar
(milliseconds a symbol). The indicators are recurrences (EMA, Wilder smoothing) or small fixed
windows, so their state can be carried from bar to bar. Each recurrence below replays what
pandas-ta asks TA-Lib for in `compute_features` -- same seeding (SMA seeds, MACD's fast EMA seeded
on the slow EMA's first bar, Wilder sums for ADX/DM), same operation order, same zero guards -- so
a state seeded on a tail equals the batch pipeline on that tail, and carrying it forward differs
from re-seeding on a moved tail only by the seed's decayed memory (far below float32 resolution).
The zero guards and the Bollinger std follow the bundled TA-Lib (C 0.8.x: exact-zero tests, a
cancellation-free std that is exactly 0 on a flat window), as measured against it; the tests in
tests/features compare with the batch path, so a TA-Lib upgrade that changes them shows there.

Fixed windows (Bollinger, stochastic, rolling std) are recomputed over their 14..48 values each bar
rather than kept as running sums, which would drift away from the batch's fresh sums.
"""

from __future__ import annotations

import functools
import math
import operator
import sys
from collections import deque
from collections.abc import Sequence
from datetime import datetime

import numpy as np
import numpy.typing as npt
import pandas as pd

from orchestrator.features.baseline import BaselineWindow, season_cell
from orchestrator.features.dataset import F32
from orchestrator.features.indicators import FEATURE_NAMES, PARAMS, RETURN_LAGS
from orchestrator.features.online import (
    ModelInputs,
    NotEnoughHistoryError,
    required_bars,
    seed_bars,
)
from orchestrator.features.spec import CONTEXT_FEATURES, TABULAR_SUMMARY_BARS, FeatureSpec
from orchestrator.marketdata.timeframes import Timeframe

F64 = npt.NDArray[np.float64]
NAN = math.nan
# pandas-ta's non_zero_range adds this to a difference that is exactly zero.
_EPSILON = sys.float_info.epsilon
_TWO_PI = 2 * np.pi

# The order `_Indicators.step` emits its values in. Checked at import: a feature added to
# indicators.py without a recurrence here must fail loudly, not shift columns (serving skew).
_ROW_NAMES: tuple[str, ...] = (
    *(f"ret_{lag}" for lag in RETURN_LAGS),
    "rsi",
    "macd",
    "macd_signal",
    "macd_hist",
    "atr_rel",
    "bb_pctb",
    "bb_width",
    "ema_fast_dist",
    "ema_mid_dist",
    "ema_slow_dist",
    "adx",
    "dmp_dmn",
    "stoch_k",
    "stoch_d",
    "volume_z",
    "range_atr",
    "realized_vol",
    "body_atr",
    "hour_sin",
    "hour_cos",
    "dow_sin",
    "dow_cos",
)
if _ROW_NAMES != FEATURE_NAMES:
    raise RuntimeError(
        "orchestrator/features/incremental.py does not compute the features indicators.py defines; "
        "add the new feature's recurrence there"
    )
_N_FEATURES = len(FEATURE_NAMES)


def _div(numerator: float, denominator: float) -> float:
    """numpy's x/0 is inf or NaN and compute_features turns both into NaN; Python would raise."""
    return numerator / denominator if denominator != 0.0 else NAN


def _sum(values: deque[float]) -> float:
    """Left-to-right sum, as TA-Lib's SMA accumulates its first window (reduce's loop runs in
    C: the same additions in the same order as a Python loop from 0.0, faster)."""
    return functools.reduce(operator.add, values, 0.0)


def _flat(window: deque[float], newest: float) -> bool:
    """Whether every value of a finite window is the same: the newest against the oldest first,
    which settles the usual case without scanning the window twice (max and min)."""
    return newest == window[0] and max(window) == min(window)


class _Ema:
    """TA-Lib EMA: seeded with the SMA of the first `length` values, then k = 2 / (length + 1)."""

    __slots__ = ("_k", "_length", "_n", "_sum", "value")

    def __init__(self, length: int) -> None:
        self._length, self._k = length, 2.0 / (length + 1)
        self._n, self._sum, self.value = 0, 0.0, NAN

    def update(self, x: float) -> float:
        if self._n >= self._length:
            self.value = ((x - self.value) * self._k) + self.value
            return self.value
        self._n += 1
        self._sum += x
        if self._n == self._length:
            self.value = self._sum / self._length
        return self.value


class _Atr:
    """TA-Lib ATR: SMA of the first `length` true ranges (from the 2nd bar), then Wilder."""

    __slots__ = ("_length", "_n", "_prev_close", "_sum", "value")

    def __init__(self, length: int) -> None:
        self._length, self._n, self._sum = length, 0, 0.0
        self._prev_close, self.value = NAN, NAN

    def update(self, high: float, low: float, close: float) -> float:
        n = self._n
        self._n += 1
        if n > 0:
            tr = high - low
            up, down = abs(self._prev_close - high), abs(self._prev_close - low)
            if up > tr:
                tr = up
            if down > tr:
                tr = down
            if n > self._length:
                value = self.value * (self._length - 1)
                value += tr
                self.value = value / self._length
            else:
                self._sum += tr
                if n == self._length:
                    self.value = self._sum / self._length
        self._prev_close = close
        return self.value


class _Rsi:
    """TA-Lib RSI: average gain/loss of the first `length` changes, then Wilder; 0/0 gives 0."""

    __slots__ = ("_gain", "_length", "_loss", "_n", "_prev", "value")

    def __init__(self, length: int) -> None:
        self._length, self._n = length, 0
        self._gain = self._loss = 0.0
        self._prev = self.value = NAN

    def update(self, close: float) -> float:
        n = self._n
        self._n += 1
        change = close - self._prev
        self._prev = close
        if n == 0:
            return self.value
        gain, loss = self._gain, self._loss
        if n > self._length:
            loss *= self._length - 1
            gain *= self._length - 1
        if change < 0:
            loss -= change
        else:
            gain += change
        if n >= self._length:
            loss /= self._length
            gain /= self._length
            total = gain + loss
            self.value = 100.0 * (gain / total) if total != 0.0 else 0.0
        self._gain, self._loss = gain, loss
        return self.value


class _Macd:
    """TA-Lib MACD. Both EMAs are seeded on the slow EMA's first bar: the fast one with the SMA
    of its last `fast` closes there, not of the series' first ones; the signal is a TA-Lib EMA
    of the line, and the line is published only once the signal exists."""

    __slots__ = (
        "_fast",
        "_k_fast",
        "_k_slow",
        "_n",
        "_recent",
        "_signal",
        "_slow",
        "_slow_sum",
        "fast_ema",
        "slow_ema",
    )

    def __init__(self, fast: int, slow: int, signal: int) -> None:
        if slow < fast:
            fast, slow = slow, fast
        self._fast, self._slow = fast, slow
        self._k_fast, self._k_slow = 2.0 / (fast + 1), 2.0 / (slow + 1)
        self._signal = _Ema(signal)
        self._recent: deque[float] = deque(maxlen=fast)
        self._n, self._slow_sum = 0, 0.0
        self.fast_ema = self.slow_ema = NAN

    def update(self, close: float) -> tuple[float, float, float]:
        if self._n >= self._slow:
            self.slow_ema = ((close - self.slow_ema) * self._k_slow) + self.slow_ema
            self.fast_ema = ((close - self.fast_ema) * self._k_fast) + self.fast_ema
        else:
            self._n += 1
            self._slow_sum += close
            self._recent.append(close)
            if self._n < self._slow:
                return NAN, NAN, NAN
            self.slow_ema = self._slow_sum / self._slow
            self.fast_ema = _sum(self._recent) / self._fast
            self._recent.clear()
        line = self.fast_ema - self.slow_ema
        signal = self._signal.update(line)
        if math.isnan(signal):
            return NAN, NAN, NAN
        return line, signal, line - signal


class _Bbands:
    """TA-Lib BBANDS (SMA middle, population std) and pandas-ta's %B and bandwidth on top."""

    __slots__ = ("_dev", "_length", "_window")

    def __init__(self, length: int, dev: float) -> None:
        self._length, self._dev = length, dev
        self._window: deque[float] = deque(maxlen=length)

    def update(self, close: float) -> tuple[float, float]:
        window = self._window
        window.append(close)
        if len(window) < self._length:
            return NAN, NAN
        mid = _sum(window) / self._length
        if _flat(window, close):
            std = 0.0  # TA-Lib answers exactly 0 for a flat window, not the mean's rounding error
        else:
            total = 0.0
            for x in window:
                d = x - mid
                total += d * d
            std = math.sqrt(total / self._length)
        deviation = std * self._dev
        upper, lower = mid + deviation, mid - deviation
        # pandas-ta's non_zero_range adds epsilon to the whole column when any row is exactly 0;
        # only this bar is known here, so only a zero becomes epsilon. Other rows of such a column
        # move by 2.2e-16 absolute: invisible unless they are themselves ~1e-16.
        width = upper - lower
        if width == 0.0:
            width = _EPSILON
        above = close - lower
        if above == 0.0:
            above = _EPSILON
        return above / width, 100 * width / mid / 100.0


class _Dmi:
    """TA-Lib ADX(n) with its PLUS_DI/MINUS_DI: Wilder sums of +DM, -DM and TR over n - 1 bars,
    ADX = mean of the next n DX values, then Wilder. PLUS_DI/MINUS_DI(n) are 100 x the same
    smoothed +DM/-DM over the smoothed TR (0 when TR is 0), published from bar n."""

    __slots__ = (
        "_dx_sum",
        "_length",
        "_minus",
        "_n",
        "_plus",
        "_prev_close",
        "_prev_high",
        "_prev_low",
        "_tr",
        "adx",
    )

    def __init__(self, length: int) -> None:
        self._length, self._n = length, 0
        self._minus = self._plus = self._tr = self._dx_sum = 0.0
        self._prev_high = self._prev_low = self._prev_close = NAN
        self.adx = NAN

    def update(self, high: float, low: float, close: float) -> tuple[float, float, float]:
        n, length = self._n, self._length
        self._n += 1
        if n == 0:
            self._prev_high, self._prev_low, self._prev_close = high, low, close
            return NAN, NAN, NAN
        diff_plus = high - self._prev_high
        diff_minus = self._prev_low - low
        self._prev_high, self._prev_low = high, low
        tr = high - low
        up, down = abs(high - self._prev_close), abs(low - self._prev_close)
        if up > tr:
            tr = up
        if down > tr:
            tr = down
        self._prev_close = close
        minus, plus = self._minus, self._plus
        if n < length:
            if diff_minus > 0 and diff_plus < diff_minus:
                minus += diff_minus
            elif diff_plus > 0 and diff_plus > diff_minus:
                plus += diff_plus
            self._tr += tr
        else:
            minus -= minus / length
            plus -= plus / length
            if diff_minus > 0 and diff_plus < diff_minus:
                minus += diff_minus
            elif diff_plus > 0 and diff_plus > diff_minus:
                plus += diff_plus
            self._tr = self._tr - (self._tr / length) + tr
            if self._tr != 0.0:
                minus_di = 100.0 * (minus / self._tr)
                plus_di = 100.0 * (plus / self._tr)
                total = minus_di + plus_di
                if total != 0.0:
                    dx = 100.0 * (abs(minus_di - plus_di) / total)
                    if n <= 2 * length - 1:
                        self._dx_sum += dx
                    else:
                        self.adx = ((self.adx * (length - 1)) + dx) / length
            if n == 2 * length - 1:
                self.adx = self._dx_sum / length
        self._minus, self._plus = minus, plus
        if n < length:
            return NAN, NAN, NAN  # +DI/-DI start with the first smoothed bar, as in TA-Lib
        if self._tr == 0.0:
            return self.adx, 0.0, 0.0
        return self.adx, 100.0 * plus / self._tr, 100.0 * minus / self._tr


class _SmaWindow:
    """TA-Lib SMA over a short window (the stochastic's smoothing)."""

    __slots__ = ("_length", "_window")

    def __init__(self, length: int) -> None:
        self._length = length
        self._window: deque[float] = deque(maxlen=length)

    def update(self, x: float) -> float:
        self._window.append(x)
        if len(self._window) < self._length:
            return NAN
        return _sum(self._window) / self._length


class _Stoch:
    """TA-Lib STOCH(k, smooth, d) with SMA smoothing: raw %K = (close - LL) / ((HH - LL) / 100),
    0 on a flat window."""

    __slots__ = ("_highs", "_k", "_lows", "_slow_d", "_slow_k")

    def __init__(self, k: int, smooth: int, d: int) -> None:
        self._k = k
        self._highs: deque[float] = deque(maxlen=k)
        self._lows: deque[float] = deque(maxlen=k)
        self._slow_k, self._slow_d = _SmaWindow(smooth), _SmaWindow(d)

    def update(self, high: float, low: float, close: float) -> tuple[float, float]:
        self._highs.append(high)
        self._lows.append(low)
        if len(self._highs) < self._k:
            return NAN, NAN
        lowest = min(self._lows)
        diff = (max(self._highs) - lowest) / 100.0
        raw = (close - lowest) / diff if diff != 0.0 else 0.0
        slow_k = self._slow_k.update(raw)
        if math.isnan(slow_k):
            return NAN, NAN
        slow_d = self._slow_d.update(slow_k)
        if math.isnan(slow_d):
            return NAN, NAN  # TA-Lib publishes %K only from %D's first bar
        return slow_k, slow_d


class _RollingStd:
    """pandas rolling(n).mean() and .std() (ddof=1): NaN while the window lacks n values, exactly
    (x, 0) when the window is flat, as pandas' same-value shortcut answers."""

    __slots__ = ("_length", "_since_nan", "_window")

    def __init__(self, length: int) -> None:
        self._length, self._since_nan = length, 0
        self._window: deque[float] = deque(maxlen=length)

    def update(self, x: float) -> tuple[float, float]:
        window = self._window
        window.append(x)
        self._since_nan = 0 if math.isnan(x) else self._since_nan + 1
        if self._since_nan < self._length:
            return NAN, NAN
        if _flat(window, x):
            return x, 0.0
        mean = sum(window) / self._length
        total = 0.0
        for value in window:
            d = value - mean
            total += d * d
        return mean, math.sqrt(total / (self._length - 1))


class _Indicators:
    """Every recurrence of compute_features, fed one bar at a time."""

    __slots__ = (
        "atr",
        "bb",
        "dmi",
        "ema_fast",
        "ema_mid",
        "ema_slow",
        "log_close",
        "macd",
        "realized",
        "rsi",
        "stoch",
        "volume",
    )

    def __init__(self) -> None:
        p = PARAMS
        self.log_close: deque[float] = deque(maxlen=max(RETURN_LAGS) + 1)
        self.atr = _Atr(int(p["atr"]))
        self.rsi = _Rsi(int(p["rsi"]))
        self.macd = _Macd(int(p["macd_fast"]), int(p["macd_slow"]), int(p["macd_signal"]))
        self.bb = _Bbands(int(p["bb_length"]), float(p["bb_std"]))
        self.ema_fast = _Ema(int(p["ema_fast"]))
        self.ema_mid = _Ema(int(p["ema_mid"]))
        self.ema_slow = _Ema(int(p["ema_slow"]))
        self.dmi = _Dmi(int(p["adx"]))
        self.stoch = _Stoch(int(p["stoch_k"]), int(p["stoch_smooth"]), int(p["stoch_d"]))
        self.volume = _RollingStd(int(p["volume_z"]))
        self.realized = _RollingStd(int(p["realized_vol"]))

    def step(
        self, o: float, h: float, low: float, c: float, v: float, log_c: float, log1p_v: float
    ) -> list[float]:
        """Feature values of this bar up to body_atr (no time features), then its ATR."""
        logs = self.log_close
        previous = logs[-1] if logs else NAN
        logs.append(log_c)
        n = len(logs)
        row = [log_c - logs[-1 - lag] if lag < n else NAN for lag in RETURN_LAGS]
        atr = self.atr.update(h, low, c)
        row.append(self.rsi.update(c) / 100.0 - 0.5)
        macd, signal, hist = self.macd.update(c)
        row += (_div(macd, atr), _div(signal, atr), _div(hist, atr), _div(atr, c))
        row += self.bb.update(c)
        for ema in (self.ema_fast, self.ema_mid, self.ema_slow):
            row.append(_div(c - ema.update(c), atr))
        adx, plus_di, minus_di = self.dmi.update(h, low, c)
        row += (adx / 100.0, (plus_di - minus_di) / 100.0)
        slow_k, slow_d = self.stoch.update(h, low, c)
        row += (slow_k / 100.0 - 0.5, slow_d / 100.0 - 0.5)
        mean, std = self.volume.update(log1p_v)
        row.append((log1p_v - mean) / (std + 1e-9))
        row.append(_div(h - low, atr))
        row.append(self.realized.update(log_c - previous)[1])
        row += (_div(c - o, atr), atr)
        return row


def _time_features(ts: pd.Timestamp) -> tuple[float, float, float, float]:
    """compute_features' calendar encoding of the bar's open time (in its own timezone)."""
    hour = ts.hour + ts.minute / 60.0
    dow = ts.dayofweek + hour / 24.0
    day, week = _TWO_PI * hour / 24.0, _TWO_PI * dow / 7.0
    return math.sin(day), math.cos(day), math.sin(week), math.cos(week)


class IncrementalFeatures:
    """Indicator state of one (symbol, timeframe); one new bar costs O(1).

    `seed()` is the way in (`features/seed_batch.seed_states` seeds many at once, into the same
    fields); `IncrementalFeatures(spec)` starts empty and warms up from its first bar like
    compute_features on a whole series. Holds the normalised rows of the last
    max(window, TABULAR_SUMMARY_BARS) bars in a ring of that many float32 rows; `inputs()` copies
    them out oldest first (it copies the window anyway). A 5m state is about 47 KB, half of it the
    baselines' week of bar measures (tests/features/test_state_size.py).
    """

    __slots__ = (
        "_baseline",
        "_count",
        "_ctx_columns",
        "_last_bar",
        "_last_time",
        "_mean",
        "_order",
        "_raw",
        "_ring",
        "_ring_size",
        "_slot",
        "_spec",
        "_state",
        "_std",
    )

    def __init__(self, spec: FeatureSpec) -> None:
        self._spec = spec
        self._state = _Indicators()
        unknown = [name for name in spec.feature_names if name not in FEATURE_NAMES]
        if unknown:
            raise ValueError(f"feature spec names features this pipeline lacks: {unknown}")
        order = [FEATURE_NAMES.index(name) for name in spec.feature_names]
        # normalise() selects spec.feature_names; identity order (the usual case) skips a gather.
        self._order: npt.NDArray[np.intp] | None = (
            None if order == list(range(_N_FEATURES)) else np.asarray(order, dtype=np.intp)
        )
        self._mean: F64 = np.asarray(spec.mean, dtype=np.float64)
        self._std: F64 = np.asarray(spec.std, dtype=np.float64)
        # context_vectors indexes the normalised columns by FEATURE_NAMES position; so do we.
        self._ctx_columns = np.asarray(
            [FEATURE_NAMES.index(name) for name in CONTEXT_FEATURES], dtype=np.intp
        )
        self._ring_size = max(spec.window, TABULAR_SUMMARY_BARS)
        self._ring: F32 = np.full(
            (self._ring_size, len(spec.feature_names)), np.nan, dtype=np.float32
        )
        self._slot = -1
        self._count = 0
        self._raw: F64 = np.full(_N_FEATURES + 1, np.nan)
        self._last_time: pd.Timestamp | None = None
        self._last_bar = (NAN, NAN, NAN, NAN, NAN)
        self._baseline = BaselineWindow(Timeframe(spec.timeframe))

    @classmethod
    def seed(cls, bars: pd.DataFrame, spec: FeatureSpec) -> IncrementalFeatures:
        """Full recompute from the tail of `bars` (after a restart, a gap or a corrected bar): the
        same tails inputs_for_latest reads (pass seed_bars(spec) bars for the baselines' week)."""
        need = required_bars(spec)
        if len(bars) < need:
            raise NotEnoughHistoryError(len(bars), need)
        tail = bars.iloc[-need:]
        history = bars.iloc[-seed_bars(spec) :]
        columns = [tail[k].to_numpy(np.float64) for k in ("open", "high", "low", "close", "volume")]
        o, h, low, c, v = (col.tolist() for col in columns)
        # Vectorised logs are the same numpy kernels update() calls per scalar.
        log_c = np.log(columns[3]).tolist()
        log1p_v = np.log1p(columns[4]).tolist()
        index = pd.DatetimeIndex(tail.index)
        features = cls(spec)
        window = features._baseline
        window.extend(*(history[k].to_numpy(np.float64) for k in ("open", "high", "low", "close")))
        state = features._state
        stored_from = need - features._ring_size  # older rows never reach a window
        for i in range(need):
            row = state.step(o[i], h[i], low[i], c[i], v[i], log_c[i], log1p_v[i])
            if i >= stored_from:
                features._store(index[i], row)
        features._count = need
        features._last_time = index[-1]
        features._last_bar = (o[-1], h[-1], low[-1], c[-1], v[-1])
        return features

    def update(
        self,
        ts: pd.Timestamp | datetime,
        open: float,
        high: float,
        low: float,
        close: float,
        volume: float,
    ) -> None:
        """Append one closed bar; `ts` is its open time in the seed frame's timezone (the calendar
        features read it as compute_features reads the index). A bar not newer than last_time (a
        repeat or a correction) is refused: state cannot be un-applied, so seed() again."""
        stamp, (o, h, lo, c, v) = checked_bar(self, (ts, open, high, low, close, volume))
        row = self._state.step(o, h, lo, c, v, float(np.log(c)), float(np.log1p(v)))
        self._baseline.update(o, h, lo, c)
        self._store(stamp, row)
        self._count += 1
        self._last_time = stamp
        self._last_bar = (o, h, lo, c, v)

    def _store(self, ts: pd.Timestamp, row: list[float]) -> None:
        """Raw row (+ time features) -> normalised float32 row, into the ring."""
        atr = row.pop()
        row += _time_features(ts)
        row.append(atr)
        raw = np.array(row, dtype=np.float64)
        features = raw[:-1]
        features[~np.isfinite(features)] = np.nan  # compute_features: inf -> NaN (not atr)
        self._raw = raw
        self._put(self.normalise_rows(features))

    @staticmethod
    def store_many(
        states: Sequence[IncrementalFeatures],
        stamps: Sequence[pd.Timestamp],
        bars: Sequence[Ohlcv],
        raw: F64,
    ) -> None:
        """What update() keeps after its step, for states of one spec stepped together
        (features/step_batch.py): `raw` holds their raw rows, ATR last."""
        features = raw[:, :-1]
        features[~np.isfinite(features)] = np.nan  # compute_features: inf -> NaN (not atr)
        normalised = states[0].normalise_rows(features)
        for k, state in enumerate(states):
            state._raw = raw[k].copy()
            state._count += 1
            state._last_time = stamps[k]
            state._last_bar = bars[k]
            state._put(normalised[k])

    def _put(self, normalised: F32) -> None:
        slot = self._slot + 1 if self._slot + 1 < self._ring_size else 0
        self._ring[slot] = normalised
        self._slot = slot

    def normalise_rows(self, features: F64) -> F32:
        """Raw feature rows (FEATURE_NAMES order, any leading shape) -> the spec's normalised
        float32 columns, as the ring stores them."""
        values = features if self._order is None else features[..., self._order]
        z = (values - self._mean) / self._std
        clip = self._spec.clip_z
        normalised: F32 = np.clip(z, -clip, clip).astype(np.float32)
        return normalised

    def adopt_seed(
        self,
        ring: F32,
        raw: F64,
        last_time: pd.Timestamp,
        last_bar: tuple[float, float, float, float, float],
        count: int,
    ) -> None:
        """What seed() leaves besides the indicators' and baselines' state, computed elsewhere
        (features/seed_batch.py seeds many states together): the normalised rows oldest first,
        the newest raw row, and the newest bar."""
        if ring.shape != self._ring.shape:
            raise ValueError(f"ring of shape {ring.shape}, this state keeps {self._ring.shape}")
        self._ring, self._slot = ring, self._ring_size - 1
        self._raw, self._count = raw, count
        self._last_time, self._last_bar = last_time, last_bar

    @property
    def ring_size(self) -> int:
        """Normalised rows kept: the network window or the tabular summary, the longer."""
        return self._ring_size

    # What features/batch_inputs.py reads to build many states' inputs at once.
    @property
    def spec(self) -> FeatureSpec:
        return self._spec

    @property
    def required(self) -> int:
        """Bars consumed before the inputs are served (required_bars of the spec)."""
        return required_bars(self._spec)

    @property
    def ring(self) -> F32:
        """The normalised rows, the newest at `newest_slot` (not oldest first)."""
        return self._ring

    @property
    def newest_slot(self) -> int:
        return self._slot

    @property
    def bar_count(self) -> int:
        """Bars consumed, seed included."""
        return self._count

    @property
    def atr(self) -> float:
        """ATR of the newest bar, price units."""
        return float(self._raw[-1])

    @property
    def context_columns(self) -> npt.NDArray[np.intp]:
        return self._ctx_columns

    @property
    def indicators(self) -> _Indicators:
        """The recurrences' state (features/seed_batch.py writes it for a batch seed)."""
        return self._state

    @property
    def baseline(self) -> BaselineWindow:
        return self._baseline

    def share_spec(self, spec: FeatureSpec) -> None:
        """Points this state at `spec`, equal to the one it holds: a state built in another
        process (inference/seeding.py) arrives with a copy of its own, ~150 KB of Python
        objects (the serving head's tables) that the states of one spec otherwise share."""
        if spec != self._spec:
            raise ValueError("share_spec: the spec differs from the one this state was seeded with")
        self._spec = spec

    @property
    def last_time(self) -> pd.Timestamp:
        """Open time of the newest bar consumed."""
        if self._last_time is None:
            raise ValueError("no bar consumed yet")
        return self._last_time

    @property
    def last_bar(self) -> tuple[float, float, float, float, float]:
        """OHLCV of the newest bar, so a caller can tell a corrected bar from the one we hold."""
        return self._last_bar

    def raw_features(self) -> F64:
        """Newest raw feature row in FEATURE_NAMES order, then atr (a compute_features row)."""
        return self._raw.copy()

    def inputs(self) -> ModelInputs:
        """What inputs_for_latest(all bars so far, spec) answers, from the ring."""
        need = required_bars(self._spec)
        ring, newest = self._ring, self._slot + 1
        rows = np.concatenate((ring[newest:], ring[:newest]))  # oldest first, one copy
        seq = rows[len(rows) - self._spec.window :]
        # Fewer bars than the batch tail: the seeds' memory has not decayed yet; refuse as it does.
        if self._count < need or not np.isfinite(seq).all():
            raise NotEnoughHistoryError(self._count, need)
        latest = rows[-1]
        summary = rows[len(rows) - TABULAR_SUMMARY_BARS :].astype(np.float64)
        means = summary.sum(axis=0) / TABULAR_SUMMARY_BARS
        tab = np.concatenate([latest, means]).astype(np.float32)
        atr, close = float(self._raw[-1]), self._last_bar[3]
        return ModelInputs(
            seq[np.newaxis],
            tab[np.newaxis],
            latest[self._ctx_columns][np.newaxis],
            atr,
            close,
            self.last_time,
            self._baseline.features(atr, close)[np.newaxis],
            np.array([season_cell(self.last_time)], dtype=np.int64),
        )


Bar = tuple[datetime, float, float, float, float, float]  # open time, OHLCV


Ohlcv = tuple[float, float, float, float, float]


def checked_bar(
    state: IncrementalFeatures, bar: tuple[pd.Timestamp | datetime, *Ohlcv]
) -> tuple[pd.Timestamp, Ohlcv]:
    """The bar's open time and OHLCV as update() takes them, or the ValueError it raises: a
    bar not after the state's last one, or a non-finite value."""
    ts, *values = bar
    stamp = pd.Timestamp(ts)
    last = state._last_time
    if last is not None and stamp <= last:
        raise ValueError(f"bar at {stamp} is not after the last one ({last}); seed() again")
    o, h, lo, c, v = (float(x) for x in values)
    if not all(map(math.isfinite, (o, h, lo, c, v))):
        raise ValueError(f"bar at {stamp} has a non-finite value: {(o, h, lo, c, v)}")
    return stamp, (o, h, lo, c, v)
