"""GET /api/predict/{symbol}: predicted ranges per horizon from the Triton-served models."""

from __future__ import annotations

import asyncio
from datetime import datetime

import msgspec
from litestar import Controller, get
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery

from orchestrator.api.errors import PREDICTION_ERRORS, BadParameterError
from orchestrator.features.horizons import Horizon
from orchestrator.features.online import ModelInputs, inputs_for_latest, required_bars
from orchestrator.features.spec import FeatureSpec
from orchestrator.inference.client import (
    EnsembleOutput,
    ModelServiceUnavailableError,
    SignalModels,
)
from orchestrator.inference.models import BASE_TIMEFRAME
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import parse_symbol, parse_timeframe
from orchestrator.signals.logic import Signal, build_signal
from orchestrator.signals.strategies import DEFAULT_STRATEGY, STRATEGIES, Strategy

HORIZON_CHOICES = ("all", *(h.value for h in Horizon))


class RangeATR(msgspec.Struct):
    up: float
    down: float


class HorizonPrediction(msgspec.Struct):
    horizon: str
    bars: int
    high: float  # price the market is expected to reach above the close
    low: float
    up_atr: float  # mean of the two range models, in ATR units
    down_atr: float
    gru: RangeATR
    transformer: RangeATR


class PredictionResponse(msgspec.Struct):
    symbol: str
    timeframe: str
    bar_time: datetime  # open time of the bar the prediction refers to (the latest closed bar)
    close: float
    atr: float
    horizons: list[HorizonPrediction]
    direction: str  # "long" or "short"
    confidence: float  # P(the trade in `direction` wins), from the metamodel
    p_long: float
    p_short: float
    model_version: str
    feature_fingerprint: str


async def served_models(state: State, timeframe: str) -> tuple[SignalModels, str]:
    """The timeframe's model set and its served version, or a 400 naming the fix when Triton
    serves none for that timeframe."""
    resources = state.resources
    models: SignalModels = resources.models_for(timeframe)
    try:
        return models, await models.served_version()
    except ModelServiceUnavailableError:
        if timeframe == BASE_TIMEFRAME:
            raise
        await resources.models_for(BASE_TIMEFRAME).served_version()  # Triton down: that 503 wins
        raise BadParameterError(
            "timeframe",
            f"no {timeframe} models are served ({models.ensemble} is not loaded); train them "
            f'with `make models TIMEFRAMES="{timeframe}"` and restart Triton',
        ) from None


class SignalResponse(msgspec.Struct):
    symbol: str
    timeframe: str
    bar_time: datetime
    signal: Signal
    strategy: Strategy
    p_long: float
    p_short: float
    model_version: str


class Inference(msgspec.Struct):
    symbol: str
    timeframe: str
    spec: FeatureSpec
    inputs: ModelInputs
    out: EnsembleOutput


async def infer_latest(
    state: State, symbol: str, timeframe: str, *, last_bar: datetime | None = None
) -> Inference:
    """Latest bars -> shared features -> one ensemble request, cached with single-flight by
    (symbol, timeframe, last closed bar time, served model version). A caller that has just read
    the last closed bar time (the stream's watcher) passes it as `last_bar`."""
    sym, tf = parse_symbol(symbol), parse_timeframe(timeframe)
    models, version = await served_models(state, tf.value)
    spec = await models.spec()
    store = BarStore(await state.resources.database())
    if last_bar is None:
        last_bar = await store.last_closed_bar_time(sym, tf)

    async def compute() -> Inference:
        bars = await store.latest_bars(sym, tf, required_bars(spec), closed_only=True)
        # ~12 ms of pandas-ta work: off the event loop, so cached requests keep flowing meanwhile.
        inputs = await asyncio.to_thread(inputs_for_latest, bars, spec)
        return Inference(sym, tf.value, spec, inputs, await models.infer([inputs]))

    cache = state.resources.predictions
    result: Inference = await cache.get((sym, tf.value, last_bar, version), compute)
    return result


def _ranges(out: EnsembleOutput, k: int) -> tuple[RangeATR, RangeATR, RangeATR]:
    """Horizon k's ranges from the GRU, the Transformer, and their mean (what signals use)."""
    gru = RangeATR(float(out.gru_range[0, 2 * k]), float(out.gru_range[0, 2 * k + 1]))
    tfm = RangeATR(
        float(out.transformer_range[0, 2 * k]), float(out.transformer_range[0, 2 * k + 1])
    )
    return gru, tfm, RangeATR((gru.up + tfm.up) / 2, (gru.down + tfm.down) / 2)


def prediction_response(run: Inference, horizon: str = "all") -> PredictionResponse:
    inputs, out, spec = run.inputs, run.out, run.spec
    horizons = []
    for k, (name, count) in enumerate(zip(spec.horizons, spec.horizon_bars, strict=True)):
        if horizon not in ("all", name):
            continue
        gru, tfm, mean = _ranges(out, k)
        horizons.append(
            HorizonPrediction(
                name,
                count,
                inputs.close + mean.up * inputs.atr,
                inputs.close - mean.down * inputs.atr,
                mean.up,
                mean.down,
                gru,
                tfm,
            )
        )
    return PredictionResponse(
        run.symbol,
        run.timeframe,
        inputs.bar_time.to_pydatetime(),
        inputs.close,
        inputs.atr,
        horizons,
        "long" if out.direction[0] > 0 else "short",
        float(out.confidence[0]),
        float(out.p_long[0]),
        float(out.p_short[0]),
        out.model_version,
        spec.fingerprint,
    )


def signal_response(run: Inference, strategy: Strategy) -> SignalResponse:
    """The live signal; the backtester applies the same rules to batches of predictions."""
    spec, out, inputs = run.spec, run.out, run.inputs
    k = spec.horizons.index(spec.label_horizon)
    _, _, mean = _ranges(out, k)
    signal = build_signal(
        close=inputs.close,
        atr=inputs.atr,
        direction=float(out.direction[0]),
        confidence=float(out.confidence[0]),
        p_long=float(out.p_long[0]),
        p_short=float(out.p_short[0]),
        up_atr=mean.up,
        down_atr=mean.down,
        tp_atr=spec.tp_atr,
        sl_atr=spec.sl_atr,
        horizon=spec.label_horizon,
        horizon_bars=spec.horizon_bars[k],
        strategy=strategy,
    )
    return SignalResponse(
        run.symbol,
        run.timeframe,
        inputs.bar_time.to_pydatetime(),
        signal,
        strategy,
        float(out.p_long[0]),
        float(out.p_short[0]),
        out.model_version,
    )


def resolve_strategy(name: str, min_confidence: float | None = None) -> Strategy:
    chosen = STRATEGIES.get(name)
    if chosen is None:
        raise BadParameterError(
            "strategy", f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}"
        )
    if min_confidence is not None:
        if not 0.0 <= min_confidence <= 1.0:
            raise BadParameterError("min_confidence", "min_confidence must be within [0, 1]")
        chosen = msgspec.structs.replace(chosen, min_confidence=min_confidence)
    return chosen


class PredictionController(Controller):
    path = "/api"
    tags = ["predictions"]  # noqa: RUF012

    @get(
        "/predict/{symbol:str}",
        summary="Predicted high/low ranges per horizon",
        responses=PREDICTION_ERRORS,
    )
    async def predict(
        self,
        state: State,
        symbol: FromPath[str],
        horizon: FromQuery[str] = "all",
        timeframe: FromQuery[str] = "5m",
    ) -> PredictionResponse:
        if horizon not in HORIZON_CHOICES:
            raise BadParameterError(
                "horizon", f"horizon must be one of {', '.join(HORIZON_CHOICES)}"
            )
        return prediction_response(await infer_latest(state, symbol, timeframe), horizon)

    @get(
        "/signals/{symbol:str}",
        summary="Trade signal: direction, entry, TP, SL, confidence",
        responses=PREDICTION_ERRORS,
    )
    async def signals(
        self,
        state: State,
        symbol: FromPath[str],
        timeframe: FromQuery[str] = "5m",
        strategy: FromQuery[str] = DEFAULT_STRATEGY,
        min_confidence: FromQuery[float | None] = None,
    ) -> SignalResponse:
        chosen = resolve_strategy(strategy, min_confidence)
        return signal_response(await infer_latest(state, symbol, timeframe), chosen)
