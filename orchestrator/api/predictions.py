"""GET /api/predict and /api/signals: the newest bar's prediction (see inference/service.py),
answered with bytes encoded once per prediction."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

import msgspec
from litestar import Controller, MediaType, Response, get
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIType

from orchestrator.api.errors import PREDICTION_ERRORS, BadParameterError
from orchestrator.api.market import (
    SymbolPath,
    checked_symbol,
    checked_timeframe,
    declared,
    reject_repeated_query,
    timeframe_query,
)
from orchestrator.features.horizons import Horizon
from orchestrator.inference.barclose import Prediction
from orchestrator.inference.client import EnsembleOutput
from orchestrator.inference.models import SERVED_TIMEFRAMES
from orchestrator.inference.service import PredictionService
from orchestrator.signals.logic import Signal, build_signal
from orchestrator.signals.strategies import DEFAULT_STRATEGY, STRATEGIES, Strategy

HORIZON_CHOICES = ("all", *(h.value for h in Horizon))
# A JSON number, as JSON Schema's "number" reads a query value ("nan", "1_0", " 1" are not).
_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
ServedTimeframe = Annotated[
    str,
    timeframe_query(
        SERVED_TIMEFRAMES,
        "404 when no model set is served for it (`/health` lists the served ones)",
    ),
]


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


class SignalResponse(msgspec.Struct):
    symbol: str
    timeframe: str
    bar_time: datetime
    signal: Signal
    strategy: Strategy
    p_long: float
    p_short: float
    model_version: str


def _ranges(out: EnsembleOutput, k: int) -> tuple[RangeATR, RangeATR, RangeATR]:
    """Horizon k's ranges from the GRU, the Transformer, and their mean (what signals use)."""
    gru = RangeATR(float(out.gru_range[0, 2 * k]), float(out.gru_range[0, 2 * k + 1]))
    tfm = RangeATR(
        float(out.transformer_range[0, 2 * k]), float(out.transformer_range[0, 2 * k + 1])
    )
    return gru, tfm, RangeATR((gru.up + tfm.up) / 2, (gru.down + tfm.down) / 2)


def prediction_response(run: Prediction, horizon: str = "all") -> PredictionResponse:
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


def signal_response(run: Prediction, strategy: Strategy) -> SignalResponse:
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


def checked_number(field: str, raw: str) -> float:
    if not _NUMBER.fullmatch(raw):
        raise BadParameterError(field, f"{field} must be a number, got {raw!r}")
    return float(raw)


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


def encoded_prediction(run: Prediction, horizon: str = "all") -> bytes:
    """The /api/predict body, encoded once per prediction and horizon."""
    return run.encoded_once(f"predict:{horizon}", lambda: prediction_response(run, horizon))


def encoded_signal(run: Prediction, strategy: Strategy) -> bytes:
    """The /api/signals body, encoded once per prediction and strategy."""
    key = f"signal:{msgspec.json.encode(strategy).decode()}"
    return run.encoded_once(key, lambda: signal_response(run, strategy))


class PredictionController(Controller):
    path = "/api"
    tags = ["predictions"]  # noqa: RUF012
    before_request = staticmethod(reject_repeated_query)

    @get(
        "/predict/{symbol:str}",
        summary="Predicted high/low ranges per horizon",
        responses=PREDICTION_ERRORS,
    )
    async def predict(
        self,
        predictions: NamedDependency[PredictionService],
        symbol: SymbolPath,
        horizon: Annotated[
            str,
            declared(
                f"One horizon, or all of them: {', '.join(HORIZON_CHOICES)}",
                enum=list(HORIZON_CHOICES),
            ),
        ] = "all",
        timeframe: ServedTimeframe = "5m",
    ) -> Response[PredictionResponse]:
        sym = checked_symbol(symbol)
        if horizon not in HORIZON_CHOICES:
            raise BadParameterError(
                "horizon", f"horizon must be one of {', '.join(HORIZON_CHOICES)}"
            )
        tf = checked_timeframe(timeframe, SERVED_TIMEFRAMES)
        run = await predictions.latest(sym, tf.value)
        return Response(encoded_prediction(run, horizon), media_type=MediaType.JSON)  # type: ignore[arg-type]

    @get(
        "/signals/{symbol:str}",
        summary="Trade signal: direction, entry, TP, SL, confidence",
        responses=PREDICTION_ERRORS,
    )
    async def signals(
        self,
        predictions: NamedDependency[PredictionService],
        symbol: SymbolPath,
        timeframe: ServedTimeframe = "5m",
        strategy: Annotated[
            str,
            declared(
                "Signal filter: "
                + "; ".join(f"{s.name} ({s.description})" for s in STRATEGIES.values()),
                enum=list(STRATEGIES),
            ),
        ] = DEFAULT_STRATEGY,
        min_confidence: Annotated[
            str | None,
            declared(
                "Overrides the strategy's minimum confidence, 0 to 1",
                one_of=None,
                type=OpenAPIType.NUMBER,
                minimum=0,
                maximum=1,
            ),
        ] = None,
    ) -> Response[SignalResponse]:
        sym = checked_symbol(symbol)
        tf = checked_timeframe(timeframe, SERVED_TIMEFRAMES)
        chosen = resolve_strategy(
            strategy,
            None if min_confidence is None else checked_number("min_confidence", min_confidence),
        )
        run = await predictions.latest(sym, tf.value)
        return Response(encoded_signal(run, chosen), media_type=MediaType.JSON)  # type: ignore[arg-type]
