"""Bars -> raw feature columns with pandas-ta on its TA-Lib backend.

Every feature is scale-free (returns, ratios, oscillators, ATR units), so one model serves BTC at
60,000 and EURUSD at 1.08. Each column depends on at most LOOKBACK_BARS past bars (EMA-type
memory decays below 1e-8 within that span), which is what makes incremental updates exact enough
for serving: a tail of LOOKBACK_BARS bars reproduces the full-history value.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd
import pandas_ta as ta
import talib

# Indicator parameters are part of the feature spec's fingerprint: change one, retrain.
PARAMS: dict[str, int | float] = {
    "rsi": 14,
    "macd_fast": 12,
    "macd_slow": 26,
    "macd_signal": 9,
    "atr": 14,
    "bb_length": 20,
    "bb_std": 2.0,
    "ema_fast": 9,
    "ema_mid": 21,
    "ema_slow": 50,
    "adx": 14,
    "stoch_k": 14,
    "stoch_d": 3,
    "stoch_smooth": 3,
    "volume_z": 48,
    "realized_vol": 24,
}
RETURN_LAGS = (1, 3, 6, 12, 24, 48)
LOOKBACK_BARS = 600

FEATURE_NAMES: tuple[str, ...] = (
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


CALENDAR_NAMES = ("hour_sin", "hour_cos", "dow_sin", "dow_cos")


def calendar_features(index: pd.DatetimeIndex) -> npt.NDArray[np.float64]:
    """(T, 4) CALENDAR_NAMES of each bar's open time, read in the index's own timezone
    (also what features/seed_batch.py stores for many symbols at once)."""
    hour = index.hour.to_numpy() + index.minute.to_numpy() / 60.0
    dow = index.dayofweek.to_numpy() + hour / 24.0
    day, week = 2 * np.pi * hour / 24.0, 2 * np.pi * dow / 7.0
    return np.column_stack([np.sin(day), np.cos(day), np.sin(week), np.cos(week)])


def _col(frame: pd.DataFrame, prefix: str) -> pd.Series:
    """pandas-ta names columns with parameters (e.g. BBP_20_2.0); pick by prefix."""
    return frame[next(c for c in frame.columns if str(c).startswith(prefix))]


def compute_features(bars: pd.DataFrame) -> pd.DataFrame:
    """One row per bar; warm-up rows hold NaN. Also returns `atr` (price units) for targets.

    Columns are gathered as numpy arrays and framed once: on the 664-bar serving tail, pandas'
    per-column inserts cost more than the indicators themselves.
    """
    p = PARAMS
    o, h, low, c, v = (
        bars[k].astype(np.float64) for k in ("open", "high", "low", "close", "volume")
    )
    close = c.to_numpy()
    log_c = pd.Series(np.log(close), index=bars.index)
    out: dict[str, npt.NDArray[np.float64]] = {}
    for lag in RETURN_LAGS:
        out[f"ret_{lag}"] = log_c.diff(lag).to_numpy()
    atr_series = ta.atr(h, low, c, length=int(p["atr"]), talib=True)
    if atr_series is None:  # pandas-ta answers None for a series shorter than the indicator
        raise ValueError(f"{len(bars)} bars are too few to compute the features")
    atr = atr_series.to_numpy()
    out["rsi"] = ta.rsi(c, length=int(p["rsi"]), talib=True).to_numpy() / 100.0 - 0.5
    macd = ta.macd(
        c,
        fast=int(p["macd_fast"]),
        slow=int(p["macd_slow"]),
        signal=int(p["macd_signal"]),
        talib=True,
    )
    out["macd"] = _col(macd, "MACD_").to_numpy() / atr
    out["macd_signal"] = _col(macd, "MACDs_").to_numpy() / atr
    out["macd_hist"] = _col(macd, "MACDh_").to_numpy() / atr
    out["atr_rel"] = atr / close
    bb = ta.bbands(
        c,
        length=int(p["bb_length"]),
        lower_std=float(p["bb_std"]),
        upper_std=float(p["bb_std"]),
        talib=True,
    )
    out["bb_pctb"] = _col(bb, "BBP_").to_numpy()
    out["bb_width"] = _col(bb, "BBB_").to_numpy() / 100.0
    for name in ("fast", "mid", "slow"):
        ema = ta.ema(c, length=int(p[f"ema_{name}"]), talib=True).to_numpy()
        out[f"ema_{name}_dist"] = (close - ema) / atr
    adx = ta.adx(h, low, c, length=int(p["adx"]), talib=True)
    out["adx"] = _col(adx, "ADX_").to_numpy() / 100.0
    # +DI - -DI from TA-Lib itself: pandas-ta's TA-Lib path labels +DM/-DM (price units) as DMP/DMN.
    hlc: list[npt.NDArray[np.float64]] = [
        np.ascontiguousarray(s.to_numpy(dtype=np.float64)) for s in (h, low, c)
    ]
    plus_di = talib.PLUS_DI(hlc[0], hlc[1], hlc[2], timeperiod=int(p["adx"]))
    minus_di = talib.MINUS_DI(hlc[0], hlc[1], hlc[2], timeperiod=int(p["adx"]))
    out["dmp_dmn"] = (plus_di - minus_di) / 100.0
    stoch = ta.stoch(
        h,
        low,
        c,
        k=int(p["stoch_k"]),
        d=int(p["stoch_d"]),
        smooth_k=int(p["stoch_smooth"]),
        talib=True,
    )
    out["stoch_k"] = _col(stoch, "STOCHk_").to_numpy() / 100.0 - 0.5
    out["stoch_d"] = _col(stoch, "STOCHd_").to_numpy() / 100.0 - 0.5
    log_v = pd.Series(np.log1p(v.to_numpy()), index=bars.index)
    window = int(p["volume_z"])
    volume_z = (log_v - log_v.rolling(window).mean()) / (log_v.rolling(window).std() + 1e-9)
    out["volume_z"] = volume_z.to_numpy()
    high, low_ = h.to_numpy(), low.to_numpy()
    out["range_atr"] = (high - low_) / atr
    out["realized_vol"] = log_c.diff().rolling(int(p["realized_vol"])).std().to_numpy()
    out["body_atr"] = (close - o.to_numpy()) / atr
    calendar = calendar_features(pd.DatetimeIndex(bars.index))
    for j, name in enumerate(CALENDAR_NAMES):
        out[name] = calendar[:, j]
    values = np.column_stack([out[name] for name in FEATURE_NAMES] + [atr])
    finite = np.isfinite(values)
    finite[:, -1] = True  # atr keeps its own values (NaN during warm-up)
    values = np.where(finite, values, np.nan)
    return pd.DataFrame(values, index=bars.index, columns=[*FEATURE_NAMES, "atr"])
