"""A backtest of the served models over a stored history: bars -> Triton predictions -> the live
signal rule -> the trade simulator -> metrics, as one JSON-friendly result.

Rules that keep it honest: the signal at bar t uses the same features, models and filter as a
live /api/signals request made at t's close (predictions.py, signals/logic.py); it fills at
t+1's open (engine.py); only bars inside [start, end) can signal, and trades exit by the last
bar before `end` at the latest. Warm-up bars before `start` feed the indicators only.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd

from orchestrator.backtest.engine import BacktestConfig, ExitReason, Trades, simulate
from orchestrator.backtest.metrics import BacktestMetrics, compute_metrics, equity_curve
from orchestrator.backtest.predictions import (
    DEFAULT_IN_FLIGHT,
    MAX_BATCH,
    PREDICTION_CACHE_DIR,
    BarPredictions,
    predict_bars,
    warmup_bars,
)
from orchestrator.features.spec import FeatureSpec
from orchestrator.inference.client import SignalModels
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore, UnknownSymbolError, UnsupportedTimeframeError
from orchestrator.marketdata.timeframes import (
    InvalidSymbolError,
    InvalidTimeframeError,
    Timeframe,
    parse_symbol,
    parse_timeframe,
)
from orchestrator.signals.logic import SignalArrays, evaluate_signals
from orchestrator.signals.strategies import DEFAULT_STRATEGY, STRATEGIES, Strategy

MAX_EQUITY_POINTS = 2000

PhaseProgress = Callable[[str, float], None]  # (phase, fraction of that phase done)


# --- request --------------------------------------------------------------------------------
class BacktestRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What to backtest; naive datetimes are UTC. None means "the strategy's / models' own"."""

    symbol: str
    start: datetime  # first bar (open time) that may signal
    end: datetime  # exclusive
    timeframe: str = "5m"
    strategy: str = DEFAULT_STRATEGY
    min_confidence: float | None = None
    min_range_tp_ratio: float | None = None
    use_metamodel: bool | None = None
    horizon: str | None = None  # time stop and range filter horizon; default: the label horizon
    fee_rate: float = 0.0  # per side, fraction of notional
    slippage: float = 0.0  # per fill, fraction of price
    allow_overlap: bool = False


class BacktestRequestError(ValueError):
    """A request that cannot run as given; `field` names the parameter to change."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


class EmptyRangeError(BacktestRequestError):
    def __init__(self, message: str) -> None:
        super().__init__("start", message)


class UnknownBacktestSymbolError(BacktestRequestError):
    """No such symbol in the store (the API answers 404, like the other endpoints)."""

    def __init__(self, message: str) -> None:
        super().__init__("symbol", message)


class InsufficientHistoryError(BacktestRequestError):
    def __init__(self, have: int, need: int, message: str) -> None:
        self.have, self.need = have, need
        super().__init__("start", message)


@dataclass(frozen=True)
class Resolved:
    """A validated request: parsed names, UTC times, the strategy with overrides, engine config."""

    request: BacktestRequest
    symbol: str
    timeframe: Timeframe
    start: datetime
    end: datetime
    strategy: Strategy
    config: BacktestConfig


def parse_moment(field: str, raw: str, *, end: bool) -> datetime:
    """A date means 00:00 UTC (as an end: the day after, so that whole day is included); an ISO
    datetime is taken as given (naive = UTC). Shared by the CLI and the API."""
    try:
        if len(raw) == 10:
            day = date.fromisoformat(raw)
            moment = datetime(day.year, day.month, day.day, tzinfo=UTC)
            return moment + timedelta(days=1) if end else moment
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise BacktestRequestError(
            field,
            f"{field} {raw!r} is not a date; use YYYY-MM-DD or an ISO datetime "
            "such as 2025-06-01T00:00:00Z",
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _strategy(request: BacktestRequest) -> Strategy:
    chosen = STRATEGIES.get(request.strategy)
    if chosen is None:
        raise BacktestRequestError(
            "strategy",
            f"unknown strategy {request.strategy!r}; choose from {', '.join(STRATEGIES)}",
        )
    changes: dict[str, Any] = {}
    if request.min_confidence is not None:
        if not 0.0 <= request.min_confidence <= 1.0:
            raise BacktestRequestError("min_confidence", "min_confidence must be within [0, 1]")
        changes["min_confidence"] = float(request.min_confidence)
    if request.min_range_tp_ratio is not None:
        ratio = request.min_range_tp_ratio
        if not (math.isfinite(ratio) and ratio >= 0.0):
            raise BacktestRequestError(
                "min_range_tp_ratio", "min_range_tp_ratio must be a finite number >= 0"
            )
        changes["min_range_tp_ratio"] = float(ratio)
    if request.use_metamodel is not None:
        changes["use_metamodel"] = bool(request.use_metamodel)
    return msgspec.structs.replace(chosen, **changes) if changes else chosen


def _engine_config(request: BacktestRequest) -> BacktestConfig:
    for name in ("fee_rate", "slippage", "allow_overlap"):
        try:
            BacktestConfig(**{name: getattr(request, name)})
        except (TypeError, ValueError) as exc:
            raise BacktestRequestError(name, str(exc)) from None
    return BacktestConfig(
        fee_rate=request.fee_rate, slippage=request.slippage, allow_overlap=request.allow_overlap
    )


def resolve_request(request: BacktestRequest) -> Resolved:
    """Every check that needs neither the database nor the models."""
    try:
        symbol = parse_symbol(request.symbol)
    except InvalidSymbolError as exc:
        raise BacktestRequestError("symbol", str(exc)) from None
    try:
        timeframe = parse_timeframe(request.timeframe)
    except InvalidTimeframeError as exc:
        raise BacktestRequestError("timeframe", str(exc)) from None
    start, end = _utc(request.start), _utc(request.end)
    if end <= start:
        raise BacktestRequestError("end", f"end ({end:%Y-%m-%d %H:%M}) must be after start")
    strategy = _strategy(request)
    config = _engine_config(request)
    echo = msgspec.structs.replace(
        request, symbol=symbol, timeframe=timeframe.value, start=start, end=end
    )
    return Resolved(echo, symbol, timeframe, start, end, strategy, config)


def check_timeframe(resolved: Resolved, spec: FeatureSpec) -> None:
    if resolved.timeframe.value != spec.timeframe:
        raise BacktestRequestError(
            "timeframe",
            f"the served models are trained on {spec.timeframe} bars; use timeframe="
            f"{spec.timeframe} (or train {resolved.timeframe.value} models)",
        )


def resolve_horizon(request: BacktestRequest, spec: FeatureSpec) -> int:
    """Index into spec.horizons of the horizon whose bars time-stop a trade."""
    name = request.horizon or spec.label_horizon
    if name not in spec.horizons:
        raise BacktestRequestError(
            "horizon", f"unknown horizon {name!r}; choose from {', '.join(spec.horizons)}"
        )
    return spec.horizons.index(name)


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
    warmup_bars: int  # bars before start that fed the indicators only
    predicted_bars: int  # bars with a full feature window, scored by the models
    signals: int  # bars whose signal passed the strategy's filter
    cached: bool  # predictions came from the on-disk cache
    metrics: BacktestMetrics
    trades: list[TradeRecord]
    equity: EquityCurve
    timings: Timings
    walk_forward: WalkForwardReport | None = None


# --- bars -----------------------------------------------------------------------------------
async def _first_bar_time(db: Database, symbol: str) -> datetime | None:
    rows = await db.fetchall("SELECT MIN(ts) FROM bars WHERE symbol = %s", (symbol,))
    first = rows[0][0] if rows else None
    return first.replace(tzinfo=UTC) if first is not None else None


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
        last = await store.last_bar_time(symbol, timeframe)
    except UnknownSymbolError as exc:
        raise UnknownBacktestSymbolError(str(exc)) from None
    except UnsupportedTimeframeError as exc:
        raise BacktestRequestError("timeframe", str(exc)) from None
    if in_range.empty:
        first = await _first_bar_time(db, symbol)
        stored = (
            f"stored bars span {first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M} UTC"
            if first is not None and last is not None
            else "no bars are stored"
        )
        raise EmptyRangeError(
            f"no {timeframe.value} bars of {symbol} in [{start:%Y-%m-%d %H:%M}, "
            f"{end:%Y-%m-%d %H:%M}); {stored}"
        )
    earliest = await _first_bar_time(db, symbol)
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


# --- signals and simulation -------------------------------------------------------------------
def bar_signals(
    predictions: BarPredictions, spec: FeatureSpec, strategy: Strategy, horizon_index: int
) -> SignalArrays:
    """build_signal's decision for every bar (the range filter at `horizon_index`); bars that
    were not scored never pass."""
    k = horizon_index
    signals = evaluate_signals(
        predictions.direction,
        predictions.confidence,
        predictions.p_long,
        predictions.p_short,
        predictions.up_atr[:, k],
        predictions.down_atr[:, k],
        tp_atr=spec.tp_atr,
        strategy=strategy,
    )
    return SignalArrays(signals.side, signals.score, signals.passed & predictions.valid)


def simulate_predictions(
    bars: pd.DataFrame,
    predictions: BarPredictions,
    signals: SignalArrays,
    spec: FeatureSpec,
    horizon_index: int,
    config: BacktestConfig,
) -> Trades:
    """TP/SL at spec.tp_atr/sl_atr x the signal bar's ATR, time stop at the horizon's bars."""
    if len(bars) != len(predictions):
        raise ValueError(f"{len(bars)} bars but {len(predictions)} predictions")
    atr = np.where(predictions.valid, predictions.atr, np.nan)
    return simulate(
        bars["open"].to_numpy(np.float64),
        bars["high"].to_numpy(np.float64),
        bars["low"].to_numpy(np.float64),
        bars["close"].to_numpy(np.float64),
        side=signals.trade_side,
        tp_dist=spec.tp_atr * atr,
        sl_dist=spec.sl_atr * atr,
        horizon=spec.horizon_bars[horizon_index],
        horizon_code=horizon_index,
        config=config,
    )


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


@dataclass(frozen=True)
class Stage:
    """Everything simulate_and_report needs besides the predictions."""

    resolved: Resolved
    spec: FeatureSpec
    horizon_index: int
    bars: pd.DataFrame  # bars in [start, end) only
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
    signals = bar_signals(predictions, spec, stage.resolved.strategy, k)
    trades = simulate_predictions(stage.bars, predictions, signals, spec, k, stage.resolved.config)
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
        horizon_bars=spec.horizon_bars[k],
        tp_atr=spec.tp_atr,
        sl_atr=spec.sl_atr,
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
    bars, first = await load_history(db, resolved, before=warmup, need=warmup)
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
    stage = Stage(resolved, spec, k, bars.iloc[first:], first, loading_s, started)
    result = simulate_and_report(stage, predictions)
    notify("simulation", 1.0)
    return result
