"""Indicators in the units charts show (RSI and ADX 0-100, MACD, ATR, bands and averages in
price units), computed with TA-Lib on the stored bars.

The models read scale-free features instead (`orchestrator/features/indicators.py`); those are
what `/api/indicators?scale=model` answers. TA-Lib is called directly rather than through
pandas-ta's TA-Lib path, which answers +DM/-DM (price units) where its columns say +DI/-DI.

Each indicator says how many bars before the first answered one it needs for that value to be
settled: its window for finite ones (SMA, Bollinger, stochastic), plus, for the exponential ones
(EMA, Wilder smoothing), the span over which the seed's weight falls below SETTLED, so a value
does not depend on how much older history happened to be read. OBV is a running sum: it starts at
the first answered bar, as TA-Lib's does on those bars. VWAP is anchored at each UTC day.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd
import talib
from talib._ta_lib import MA_Type

Array = npt.NDArray[np.float64]
Params = Mapping[str, float]
# Relative weight an exponential seed may still carry at the first answered bar.
SETTLED = 1e-9
DAY_S = 86_400


@dataclass(frozen=True)
class Param:
    """One tunable parameter: an integer unless its default is a float."""

    name: str
    default: float
    minimum: float
    maximum: float

    @property
    def integer(self) -> bool:
        return isinstance(self.default, int)

    @property
    def rule(self) -> str:
        kind = "an integer" if self.integer else "a number"
        return f"{kind} from {self.minimum:g} to {self.maximum:g}"


@dataclass(frozen=True)
class Ohlcv:
    """The bars as float64 arrays, the form TA-Lib takes."""

    index: pd.DatetimeIndex
    high: Array
    low: Array
    close: Array
    volume: Array

    @classmethod
    def of(cls, bars: pd.DataFrame) -> Ohlcv:
        def column(name: str) -> Array:
            return np.ascontiguousarray(bars[name].to_numpy(dtype=np.float64))

        return cls(
            pd.DatetimeIndex(bars.index),
            column("high"),
            column("low"),
            column("close"),
            column("volume"),
        )


@dataclass(frozen=True)
class Indicator:
    name: str
    description: str
    params: tuple[Param, ...]
    outputs: tuple[str, ...]  # value names, in the order `compute` answers them
    warmup: Callable[[Params, int], int]  # (parameters, bar seconds) -> bars before the first
    compute: Callable[[Ohlcv, Params], tuple[Array, ...]]

    @property
    def usage(self) -> str:
        """The inline form, e.g. macd:fast:slow:signal."""
        return ":".join((self.name, *(p.name for p in self.params)))


def _memory(alpha: float) -> int:
    """Bars after which an exponential seed's weight (1 - alpha)^k falls below SETTLED."""
    if alpha >= 1.0:
        return 0
    return math.ceil(math.log(SETTLED) / math.log1p(-alpha))


def _wilder(length: float) -> int:
    return _memory(1.0 / length)


def _ema(length: float) -> int:
    return _memory(2.0 / (length + 1.0))


def _n(params: Params, name: str) -> int:
    return int(params[name])


def _length(default: int, minimum: int = 2, maximum: int = 200) -> Param:
    return Param("length", default, minimum, maximum)


def _macd(b: Ohlcv, p: Params) -> tuple[Array, ...]:
    line, signal, hist = talib.MACD(
        b.close, fastperiod=_n(p, "fast"), slowperiod=_n(p, "slow"), signalperiod=_n(p, "signal")
    )
    return line, signal, hist


def _bbands(b: Ohlcv, p: Params) -> tuple[Array, ...]:
    upper, middle, lower = talib.BBANDS(
        b.close,
        timeperiod=_n(p, "length"),
        nbdevup=float(p["std"]),
        nbdevdn=float(p["std"]),
        matype=MA_Type.SMA,
    )
    return upper, middle, lower


def _adx(b: Ohlcv, p: Params) -> tuple[Array, ...]:
    n = _n(p, "length")
    return (
        talib.ADX(b.high, b.low, b.close, timeperiod=n),
        talib.PLUS_DI(b.high, b.low, b.close, timeperiod=n),
        talib.MINUS_DI(b.high, b.low, b.close, timeperiod=n),
    )


def _stoch(b: Ohlcv, p: Params) -> tuple[Array, ...]:
    k, d = talib.STOCH(
        b.high,
        b.low,
        b.close,
        fastk_period=_n(p, "k"),
        slowk_period=_n(p, "smooth"),
        slowk_matype=MA_Type.SMA,
        slowd_period=_n(p, "d"),
        slowd_matype=MA_Type.SMA,
    )
    return k, d


def _vwap(b: Ohlcv, _: Params) -> tuple[Array, ...]:
    """Typical price weighted by volume since each UTC day's first bar. (pandas-ta's vwap does
    the same but switches off UserWarnings for the whole process on every call.)"""
    typical = (b.high + b.low + b.close) / 3.0
    day = b.index.tz_convert("UTC").normalize() if b.index.tz else b.index.normalize()
    weighted = pd.Series(typical * b.volume).groupby(day.to_numpy()).cumsum().to_numpy()
    volume = pd.Series(b.volume).groupby(day.to_numpy()).cumsum().to_numpy()
    with np.errstate(divide="ignore", invalid="ignore"):
        return (weighted / volume,)


_INDICATORS = (
    Indicator(
        "rsi",
        "Relative Strength Index (Wilder), 0-100",
        (_length(14),),
        ("rsi",),
        lambda p, _: _n(p, "length") + _wilder(p["length"]),
        lambda b, p: (talib.RSI(b.close, timeperiod=_n(p, "length")),),
    ),
    Indicator(
        "macd",
        "MACD line, signal and histogram, price units",
        (Param("fast", 12, 2, 200), Param("slow", 26, 2, 200), Param("signal", 9, 1, 200)),
        ("macd", "macd_signal", "macd_hist"),
        lambda p, _: _n(p, "slow") + _n(p, "signal") + _ema(p["slow"]) + _ema(p["signal"]),
        _macd,
    ),
    Indicator(
        "atr",
        "Average True Range (Wilder), price units",
        (_length(14),),
        ("atr",),
        lambda p, _: _n(p, "length") + _wilder(p["length"]),
        lambda b, p: (talib.ATR(b.high, b.low, b.close, timeperiod=_n(p, "length")),),
    ),
    Indicator(
        "bbands",
        "Bollinger Bands: upper, middle (SMA) and lower, std = population standard deviations",
        (_length(20, maximum=500), Param("std", 2.0, 0.1, 10.0)),
        ("bb_upper", "bb_middle", "bb_lower"),
        lambda p, _: _n(p, "length") - 1,
        _bbands,
    ),
    Indicator(
        "sma",
        "Simple moving average of the close",
        (_length(20, maximum=500),),
        ("sma",),
        lambda p, _: _n(p, "length") - 1,
        lambda b, p: (talib.SMA(b.close, timeperiod=_n(p, "length")),),
    ),
    Indicator(
        "ema",
        "Exponential moving average of the close (seeded with the SMA, as TA-Lib does)",
        (_length(20, maximum=500),),
        ("ema",),
        lambda p, _: _n(p, "length") + _ema(p["length"]),
        lambda b, p: (talib.EMA(b.close, timeperiod=_n(p, "length")),),
    ),
    Indicator(
        "adx",
        "Average Directional Index with +DI and -DI, 0-100",
        (_length(14),),
        ("adx", "plus_di", "minus_di"),
        lambda p, _: 2 * (_n(p, "length") + _wilder(p["length"])),
        _adx,
    ),
    Indicator(
        "stoch",
        "Slow stochastic %K and %D, 0-100 (k: look-back, smooth: %K's SMA, d: %D's SMA)",
        (Param("k", 14, 1, 200), Param("d", 3, 1, 50), Param("smooth", 3, 1, 50)),
        ("stoch_k", "stoch_d"),
        lambda p, _: _n(p, "k") + _n(p, "smooth") + _n(p, "d") - 3,
        _stoch,
    ),
    Indicator(
        "obv",
        "On-Balance Volume, summed from the first answered bar",
        (),
        ("obv",),
        lambda p, bar_s: 0,
        lambda b, _: (talib.OBV(b.close, b.volume),),
    ),
    Indicator(
        "vwap",
        "Volume-weighted average of the typical price (H+L+C)/3, anchored at each UTC day",
        (),
        ("vwap",),
        lambda p, bar_s: max(math.ceil(DAY_S / bar_s) - 1, 0),
        _vwap,
    ),
)
INDICATORS: dict[str, Indicator] = {ind.name: ind for ind in _INDICATORS}


def _format(value: float) -> str:
    return f"{value:g}"


@dataclass(frozen=True)
class IndicatorCall:
    """One indicator with its resolved parameters. Inline parameters (rsi:21) suffix the value
    names with every parameter (rsi_21), so ema:20 and ema:50 can be asked for together."""

    indicator: Indicator
    params: dict[str, float]
    inline: bool

    @property
    def keys(self) -> tuple[str, ...]:
        if not self.inline:
            return self.indicator.outputs
        suffix = "".join(f"_{_format(self.params[p.name])}" for p in self.indicator.params)
        return tuple(name + suffix for name in self.indicator.outputs)

    def warmup_bars(self, bar_s: int) -> int:
        return self.indicator.warmup(self.params, bar_s)


def required_bars(calls: list[IndicatorCall], count: int, bar_s: int) -> int:
    """Bars to read so every call's first answered value is settled."""
    return count + max((call.warmup_bars(bar_s) for call in calls), default=0)


def compute_indicators(
    bars: pd.DataFrame, calls: list[IndicatorCall], count: int, bar_s: int
) -> dict[str, Array]:
    """The last `count` values of every output of every call, keyed by value name. Each call
    reads only its own warm-up before them, so an answer does not depend on what else is asked
    (OBV's running sum would)."""
    values: dict[str, Array] = {}
    for call in calls:
        tail = Ohlcv.of(bars.iloc[max(len(bars) - count - call.warmup_bars(bar_s), 0) :])
        outputs = call.indicator.compute(tail, call.params)
        for key, series in zip(call.keys, outputs, strict=True):
            values[key] = np.asarray(series, dtype=np.float64)[-count:]
    return values
