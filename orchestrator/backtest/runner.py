"""A backtest of the served models over a stored history: bars -> Triton predictions -> the live
signal rule -> the trade simulator -> metrics, as one JSON-friendly result.

Rules that keep it honest: the signal at bar t uses the same features, models and filter as a
live /api/signals request made at t's close (predictions.py, signals/logic.py); it fills at
t+1's open (engine.py); only bars inside [start, end) can signal, and trades exit by the last
bar before `end` at the latest. Warm-up bars before `start` feed the indicators only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from orchestrator.backtest.engine import BacktestConfig, Trades, simulate
from orchestrator.backtest.metrics import compute_metrics, equity_curve
from orchestrator.backtest.predictions import (
    DEFAULT_IN_FLIGHT,
    MAX_BATCH,
    PREDICTION_CACHE_DIR,
    BarPredictions,
    history_bars_wanted,
    predict_bars,
    warmup_bars,
)
from orchestrator.backtest.report import (
    BacktestResult,
    Timings,
    WalkForwardReport,
    downsample_equity,
    trade_records,
)
from orchestrator.backtest.request import (
    BacktestRequest,
    BacktestRequestError,
    EmptyRangeError,
    InsufficientHistoryError,
    Resolved,
    UnknownBacktestSymbolError,
    check_timeframe,
    resolve_horizon,
    resolve_request,
)
from orchestrator.features.spec import FeatureSpec
from orchestrator.inference.client import SignalModels
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.sessions import infer_week
from orchestrator.marketdata.store import BarStore, UnknownSymbolError, UnsupportedTimeframeError
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.signals.barriers import barrier_signal_inputs
from orchestrator.signals.costs import cost_in_r
from orchestrator.signals.logic import BarrierEdge, SignalArrays, evaluate_signals
from orchestrator.signals.strategies import Strategy

PhaseProgress = Callable[[str, float], None]  # (phase, fraction of that phase done)


# --- bars -----------------------------------------------------------------------------------
async def load_history(
    db: Database, resolved: Resolved, *, before: int | None, need: int
) -> tuple[pd.DataFrame, int]:
    """Bars in [start, end) preceded by `before` bars (None: all stored bars before start);
    returns the frame and the number of bars before start. Fewer than `need` before start is
    an error: the first bars could not be scored as live serving would."""
    store = BarStore(db)
    symbol, timeframe, start, end = (
        resolved.symbol,
        resolved.timeframe,
        resolved.start,
        resolved.end,
    )
    try:
        in_range = await store.bars_between(symbol, timeframe, start, end)
    except UnknownSymbolError as exc:
        raise UnknownBacktestSymbolError(str(exc)) from None
    except UnsupportedTimeframeError as exc:
        raise BacktestRequestError("timeframe", str(exc)) from None
    earliest = await store.first_bar_time(symbol)
    if in_range.empty:
        first, last = earliest, await store.last_bar_time(symbol, timeframe)
        stored = (
            f"stored bars span {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC"
            if first is not None and last is not None
            else "no bars are stored"
        )
        raise EmptyRangeError(
            f"no {timeframe.value} bars of {symbol} in [{start:%Y-%m-%d %H:%M}, "
            f"{end:%Y-%m-%d %H:%M}); {stored}"
        )
    prior = in_range.iloc[:0]
    if earliest is not None and earliest < start:
        if before is None:
            prior = await store.bars_between(symbol, timeframe, earliest, start)
        else:
            # Calendars have gaps (weekends), so widen the look-back until it holds enough bars.
            span = timedelta(seconds=timeframe.seconds * before * 1.5) + timedelta(days=4)
            while True:
                prior = await store.bars_between(symbol, timeframe, start - span, start)
                if len(prior) >= before or start - span <= earliest:
                    break
                span *= 2
            prior = prior.iloc[len(prior) - min(len(prior), before) :]
    if len(prior) < need:
        missing = need - len(prior)
        earliest_start = (
            f"; the first bar with enough history is {in_range.index[missing]:%Y-%m-%d %H:%M} UTC"
            if missing < len(in_range)
            else ""
        )
        raise InsufficientHistoryError(
            len(prior),
            need,
            f"{symbol} has {len(prior)} {timeframe.value} bars before {start:%Y-%m-%d %H:%M}; "
            f"the models need {need} warm-up bars before the first backtested bar (the live "
            f"path's feature window){earliest_start}",
        )
    return pd.concat([prior, in_range]), len(prior)


def symbol_horizon_bars(spec: FeatureSpec, bars: pd.DataFrame) -> list[int]:
    """Bars of each horizon on the calendar the symbol's `bars` trade in."""
    week = infer_week(pd.DatetimeIndex(bars.index), Timeframe(spec.timeframe))
    return spec.symbol_horizon_bars(week)


# --- signals and simulation -------------------------------------------------------------------
class Levels(NamedTuple):
    """The trades' take-profit and stop in ATR multiples; `custom`: the caller's, decided by
    the barrier model (signals/barriers.py), else the models' own, decided by P(win)."""

    tp_atr: float
    sl_atr: float
    custom: bool

    @classmethod
    def of(cls, request: BacktestRequest, spec: FeatureSpec) -> Levels:
        custom = request.tp_atr is not None or request.sl_atr is not None
        return cls(request.tp_atr or spec.tp_atr, request.sl_atr or spec.sl_atr, custom)


def bar_signals(
    predictions: BarPredictions,
    spec: FeatureSpec,
    strategy: Strategy,
    horizon_index: int,
    config: BacktestConfig,
    levels: Levels | None = None,
    horizon_bars: int = 0,
) -> SignalArrays:
    """build_signal's decision for every bar (the range filter at `horizon_index`); bars that
    were not scored never pass. The edge counts the costs the simulation charges (`config`).
    Custom `levels` (over `horizon_bars`): the barrier model's P(take-profit first) and
    expected R on the side the models take decide, as /api/signals with tp and sl."""
    k = horizon_index
    levels = levels or Levels(spec.tp_atr, spec.sl_atr, False)
    round_trip = 2 * (config.fee_rate + config.slippage)
    cost_r = cost_in_r(round_trip, predictions.close, predictions.atr, levels.sl_atr)
    barrier = None
    if levels.custom:
        # Bars that were not scored get side 0: no barrier is computed for them.
        side = np.where(predictions.valid, np.where(predictions.direction > 0, 1, -1), 0)
        barrier = BarrierEdge(
            *barrier_signal_inputs(
                spec,
                k,
                levels.tp_atr,
                levels.sl_atr,
                side,
                predictions.served_range,
                predictions.p_long,
                predictions.p_short,
                horizon_bars,
                cost_r,
            )
        )
    signals = evaluate_signals(
        predictions.direction,
        predictions.confidence,
        predictions.p_long,
        predictions.p_short,
        predictions.up_atr[:, k],
        predictions.down_atr[:, k],
        tp_atr=levels.tp_atr,
        sl_atr=levels.sl_atr,
        cost_r=cost_r,
        strategy=strategy,
        barrier=barrier,
    )
    return SignalArrays(
        signals.side, signals.score, signals.passed & predictions.valid, signals.expected_r
    )


def simulate_predictions(
    bars: pd.DataFrame,
    predictions: BarPredictions,
    signals: SignalArrays,
    spec: FeatureSpec,
    horizon_index: int,
    config: BacktestConfig,
    horizon_bars: int,
    levels: Levels | None = None,
) -> Trades:
    """TP/SL at `levels` (default the spec's) x the signal bar's ATR, time stop after
    `horizon_bars`."""
    levels = levels or Levels(spec.tp_atr, spec.sl_atr, False)
    if len(bars) != len(predictions):
        raise ValueError(f"{len(bars)} bars but {len(predictions)} predictions")
    atr = np.where(predictions.valid, predictions.atr, np.nan)
    return simulate(
        bars["open"].to_numpy(np.float64),
        bars["high"].to_numpy(np.float64),
        bars["low"].to_numpy(np.float64),
        bars["close"].to_numpy(np.float64),
        side=signals.trade_side,
        tp_dist=levels.tp_atr * atr,
        sl_dist=levels.sl_atr * atr,
        horizon=horizon_bars,
        horizon_code=horizon_index,
        config=config,
    )


@dataclass(frozen=True)
class Stage:
    """Everything simulate_and_report needs besides the predictions."""

    resolved: Resolved
    spec: FeatureSpec
    horizon_index: int
    bars: pd.DataFrame  # bars in [start, end) only
    horizon_bars: list[int]  # on the symbol's calendar (symbol_horizon_bars)
    warmup: int
    loading_s: float
    started: float  # perf_counter at the start of the run


def simulate_and_report(
    stage: Stage,
    predictions: BarPredictions,
    *,
    training_s: float = 0.0,
    walk_forward: WalkForwardReport | None = None,
) -> BacktestResult:
    """Signals -> trades -> metrics, equity and the result."""
    began = time.perf_counter()
    spec, k = stage.spec, stage.horizon_index
    levels = Levels.of(stage.resolved.request, spec)
    config = stage.resolved.config
    signals = bar_signals(
        predictions, spec, stage.resolved.strategy, k, config, levels, stage.horizon_bars[k]
    )
    trades = simulate_predictions(
        stage.bars, predictions, signals, spec, k, config, stage.horizon_bars[k], levels
    )
    metrics = compute_metrics(trades, {k: spec.horizons[k]})
    equity, drawdown = equity_curve(trades)
    index = pd.DatetimeIndex(stage.bars.index)
    records = trade_records(trades, index)
    curve = downsample_equity(index, equity, drawdown)
    finished = time.perf_counter()
    return BacktestResult(
        request=stage.resolved.request,
        strategy=stage.resolved.strategy,
        model_version=predictions.model_version,
        feature_fingerprint=predictions.feature_fingerprint,
        timeframe=spec.timeframe,
        horizon=spec.horizons[k],
        horizon_bars=stage.horizon_bars[k],
        tp_atr=levels.tp_atr,
        sl_atr=levels.sl_atr,
        first_bar=index[0].to_pydatetime(),
        last_bar=index[-1].to_pydatetime(),
        bars=len(index),
        warmup_bars=stage.warmup,
        predicted_bars=int(np.count_nonzero(predictions.valid)),
        signals=int(np.count_nonzero(signals.passed)),
        cached=predictions.cached,
        metrics=metrics,
        trades=records,
        equity=curve,
        timings=Timings(
            loading_s=stage.loading_s,
            features_s=predictions.features_s,
            inference_s=predictions.inference_s,
            simulation_s=finished - began,
            total_s=finished - stage.started,
            training_s=training_s,
        ),
        walk_forward=walk_forward,
    )


def _phase_adapter(progress: PhaseProgress | None) -> Callable[[int, int], None] | None:
    """predict_bars' (done, total) as phases: its first call means the features are ready."""
    if progress is None:
        return None
    started = False

    def report(done: int, total: int) -> None:
        nonlocal started
        if not started:
            started = True
            progress("features", 1.0)
        progress("inference", done / total if total else 1.0)

    return report


async def run_backtest(
    request: BacktestRequest,
    *,
    db: Database,
    models: SignalModels,
    cache_dir: Path | None = PREDICTION_CACHE_DIR,
    progress: PhaseProgress | None = None,
    batch_size: int = MAX_BATCH,
    in_flight: int = DEFAULT_IN_FLIGHT,
) -> BacktestResult:
    """Backtest the models Triton serves now over [request.start, request.end)."""
    started = time.perf_counter()
    notify = progress or (lambda phase, fraction: None)
    resolved = resolve_request(request)
    spec = await models.spec()
    check_timeframe(resolved, spec)
    k = resolve_horizon(request, spec)
    notify("loading", 0.0)
    warmup = warmup_bars(spec)
    bars, first = await load_history(db, resolved, before=history_bars_wanted(spec), need=warmup)
    loading_s = time.perf_counter() - started
    notify("loading", 1.0)
    notify("features", 0.0)
    predictions = await predict_bars(
        models,
        bars,
        symbol=resolved.symbol,
        first=first,
        cache_dir=cache_dir,
        batch_size=batch_size,
        in_flight=in_flight,
        progress=_phase_adapter(progress),
    )
    notify("simulation", 0.0)
    stage = Stage(
        resolved,
        spec,
        k,
        bars.iloc[first:],
        symbol_horizon_bars(spec, bars),
        first,
        loading_s,
        started,
    )
    result = simulate_and_report(stage, predictions)
    notify("simulation", 1.0)
    return result
