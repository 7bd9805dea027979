"""A backtest's JSON-friendly result: the trade list with times, the (downsampled) equity curve,
timings and the walk-forward report."""

from __future__ import annotations

import itertools
import math
from datetime import datetime
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd

from orchestrator.backtest.engine import ExitReason, Trades
from orchestrator.backtest.metrics import BacktestMetrics
from orchestrator.backtest.request import BacktestRequest
from orchestrator.signals.strategies import Strategy

MAX_EQUITY_POINTS = 2000


# --- result ---------------------------------------------------------------------------------
class TradeRecord(msgspec.Struct, frozen=True):
    signal_time: datetime  # open time of the bar whose close produced the signal
    entry_time: datetime  # the next bar: filled at its open
    exit_time: datetime
    side: str  # "long" / "short"
    entry: float  # fill after slippage
    exit: float
    stop: float
    target: float | None  # None: no target
    r: float  # net of fees and slippage
    exit_reason: str
    gap: bool
    bars_held: int


class EquityCurve(msgspec.Struct, frozen=True):
    """Cumulative R at the close of each bar and its drawdown (<= 0), at most
    MAX_EQUITY_POINTS points: per time bucket the highest equity and the deepest drawdown."""

    times: list[datetime]
    equity_r: list[float]
    drawdown_r: list[float]


class Timings(msgspec.Struct, frozen=True):
    loading_s: float
    features_s: float
    inference_s: float
    simulation_s: float
    total_s: float
    training_s: float = 0.0  # walk-forward: training, export and model loading


class WindowReport(msgspec.Struct, frozen=True):
    """One walk-forward window: its models saw only bars before `start`."""

    index: int
    start: datetime  # first test bar
    end: datetime  # exclusive
    test_bars: int
    train_first_bar: datetime
    train_last_bar: datetime  # < start
    last_label_bar: datetime  # newest bar any training label looked at (<= train_last_bar)
    train_samples: int
    model_version: str
    train_s: float
    export_s: float
    load_s: float
    inference_s: float


class WalkForwardReport(msgspec.Struct, frozen=True):
    windows: list[WindowReport]
    train_config: dict[str, Any]
    train_bars: int | None  # bars of history per window (None: all before it)
    serving: str


class BacktestResult(msgspec.Struct, frozen=True):
    request: BacktestRequest  # normalised echo: upper-case symbol, UTC times
    strategy: Strategy  # with the request's overrides applied
    model_version: str  # walk-forward: one version per window, comma-separated
    feature_fingerprint: str
    timeframe: str
    horizon: str
    horizon_bars: int
    tp_atr: float
    sl_atr: float
    first_bar: datetime
    last_bar: datetime
    bars: int  # bars in [start, end)
    warmup_bars: int  # bars before start that fed the indicators and baselines only
    predicted_bars: int  # bars with a full feature window, scored by the models
    signals: int  # bars whose signal passed the strategy's filter
    cached: bool  # predictions came from the on-disk cache
    metrics: BacktestMetrics
    trades: list[TradeRecord]
    equity: EquityCurve
    timings: Timings
    walk_forward: WalkForwardReport | None = None


def trade_records(trades: Trades, index: pd.DatetimeIndex) -> list[TradeRecord]:
    labels = [reason.label for reason in ExitReason]

    def at(rows: npt.NDArray[np.int64]) -> list[datetime]:
        return list(index[rows].to_pydatetime())

    columns = zip(
        at(trades.signal_idx),
        at(trades.entry_idx),
        at(trades.exit_idx),
        trades.side.tolist(),
        trades.fill.tolist(),
        trades.exit_price.tolist(),
        trades.stop.tolist(),
        trades.target.tolist(),
        trades.r.tolist(),
        trades.reason.tolist(),
        trades.gap.tolist(),
        trades.bars_held.tolist(),
        strict=True,
    )
    return [
        TradeRecord(
            signal,
            entry,
            exit_,
            "long" if side > 0 else "short",
            fill,
            price,
            stop,
            target if math.isfinite(target) else None,
            r,
            labels[reason],
            gap,
            held,
        )
        for signal, entry, exit_, side, fill, price, stop, target, r, reason, gap, held in columns
    ]


def downsample_equity(
    index: pd.DatetimeIndex,
    equity: npt.NDArray[np.float64],
    drawdown: npt.NDArray[np.float64],
    max_points: int = MAX_EQUITY_POINTS,
) -> EquityCurve:
    """Per bucket keep the equity peak and the drawdown trough, so neither the best level nor
    the maximum drawdown disappears from the plot; plus the first and last bar."""
    n = int(equity.size)
    keep: npt.NDArray[np.int64]
    if n <= max_points:
        keep = np.arange(n, dtype=np.int64)
    else:
        buckets = (max_points - 2) // 2
        edges = np.linspace(0, n, buckets + 1).astype(np.int64)
        picks = [0, n - 1]
        for lo, hi in itertools.pairwise(edges.tolist()):
            if hi > lo:
                picks.append(lo + int(np.argmax(equity[lo:hi])))
                picks.append(lo + int(np.argmin(drawdown[lo:hi])))
        keep = np.unique(np.asarray(picks, dtype=np.int64))
    return EquityCurve(
        list(index[keep].to_pydatetime()), equity[keep].tolist(), drawdown[keep].tolist()
    )
