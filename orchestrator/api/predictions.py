"""GET /api/predict and /api/signals: the newest bar's prediction (see inference/service.py),
answered with bytes encoded once per prediction."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any

import msgspec
import numpy.typing as npt
from litestar import Controller, MediaType, Response, get
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIType

from orchestrator.api.errors import PREDICTION_ERRORS
from orchestrator.api.market import (
    SymbolPath,
    checked_symbol,
    checked_timeframe,
    declared,
    reject_repeated_query,
    timeframe_query,
)
from orchestrator.errors import BadParameterError
from orchestrator.features.barriers import SIDES
from orchestrator.features.head import PROBABILITIES
from orchestrator.features.horizons import Horizon
from orchestrator.inference.barclose import Prediction
from orchestrator.inference.models import SERVED_TIMEFRAMES
from orchestrator.inference.service import PredictionService
from orchestrator.marketdata.sessions import TradingWeek
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.signals.barriers import (
    MAX_BARRIER_ATR,
    MIN_BARRIER_ATR,
    Barrier,
    BarrierOutcome,
    BarrierQuestion,
    barrier_question,
    checked_distance,
    evaluate,
    level_in_atr,
)
from orchestrator.signals.costs import costs_for
from orchestrator.signals.logic import BarrierEdge, Signal, build_signal
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


class ServedBy(msgspec.Struct):
    """What answered each side: "networks" (the blend the gate let through) or "baselines" (the
    convex blend of HAR, log-HAR, HAR on Garman-Klass and the seasonal profile, served where the
    networks showed no edge over it; sets exported before name a single baseline: har, log_har,
    har_gk, seasonal, train_mean; docs/models.md)."""

    high: str
    low: str


class HorizonPrediction(msgspec.Struct):
    horizon: str
    # Bars the market trades (nights, weekends and breaks are not counted), on the symbol's own
    # calendar: swing is one session (78 five-minute bars on a 6.5-hour exchange, 288 for 24/7).
    bars: int
    high: float  # price the market is expected to reach above the close
    low: float
    up_atr: float  # the served range in ATR units (the serving head's stack; see docs/models.md)
    down_atr: float
    gru: RangeATR  # the networks' own outputs, before the serving head
    transformer: RangeATR
    # 80 % intervals for the high and the low, [lower, upper] in price; null for models exported
    # without a serving head.
    high_interval: list[float] | None = None
    low_interval: list[float] | None = None
    served_by: ServedBy | None = None  # null for models exported without a serving head
    # UTC close of the horizon's last bar, counting only the bars the market trades (the night,
    # the weekend and breaks skipped, as the symbol's own bars show them).
    ends_at: datetime | None = None
    # The horizon in words: "30 minutes of trading", "one session (6.5 hours of trading)", at 1d
    # and up "5 trading bars (1d)".
    duration: str | None = None


class PredictionResponse(msgspec.Struct):
    symbol: str
    timeframe: str
    bar_time: datetime  # open time of the bar the prediction refers to (the latest closed bar)
    close: float
    atr: float
    horizons: list[HorizonPrediction]
    direction: str  # "long" or "short"
    confidence: float  # P(the trade in `direction` wins): the metamodel's, calibrated
    p_long: float  # P(a long trade wins), calibrated
    p_short: float
    model_version: str
    feature_fingerprint: str
    interval_level: float | None = None  # nominal coverage of the intervals
    # Per probability (p_long, p_short, confidence): "model", or "base_rate" where the model
    # showed no Brier skill over it out of sample (the served value is then that base rate).
    probability_served: dict[str, str] | None = None
    # Per probability: how far live outcomes have moved it from what was fitted (already in
    # the served value; the controller follows a win rate that drifts). Null: it does not adapt.
    probability_shift: dict[str, float] | None = None


class SignalResponse(msgspec.Struct):
    symbol: str
    timeframe: str
    bar_time: datetime
    signal: Signal
    strategy: Strategy
    p_long: float
    p_short: float
    model_version: str
    # Where the signal's P(win) came from: "model" (calibrated, with skill shown out of sample)
    # or "base_rate" (the gate found none: the expected R is then about minus the costs).
    p_win_served: str = "model"
    # The three outcomes of the signal's side for the asked barrier (tp/sl/horizon/side query
    # parameters), by default the models' own (the spec's TP/SL at the label horizon).
    barrier: BarrierOutcome | None = None


def _pair(ranges: npt.NDArray[Any], k: int) -> RangeATR:
    """Horizon k's [up, down] of the first row of a (1, 2H) range array."""
    return RangeATR(float(ranges[0, 2 * k]), float(ranges[0, 2 * k + 1]))


def _served_range(run: Prediction, k: int) -> RangeATR:
    """Horizon k's served range in ATR units (what signals and backtests use too)."""
    return _pair(run.served.ranges, k)


def _price_intervals(run: Prediction, k: int) -> tuple[list[float] | None, list[float] | None]:
    """Horizon k's intervals for the high and the low, in price, lower bound first."""
    intervals = run.served.intervals
    if intervals is None:
        return None, None
    close, atr = run.inputs.close, run.inputs.atr
    (up_lo, up_hi), (down_lo, down_hi) = intervals[0, 2 * k], intervals[0, 2 * k + 1]
    return (
        [close + float(up_lo) * atr, close + float(up_hi) * atr],
        [close - float(down_hi) * atr, close - float(down_lo) * atr],
    )


def prediction_response(
    run: Prediction, horizon: str = "all", week: TradingWeek | None = None
) -> PredictionResponse:
    inputs, out, spec, served = run.inputs, run.out, run.spec, run.served
    bar_open = inputs.bar_time.to_pydatetime()
    horizons = []
    for k, (name, count) in enumerate(zip(spec.horizons, run.horizon_bars, strict=True)):
        if horizon not in ("all", name):
            continue
        mean = _served_range(run, k)
        high_interval, low_interval = _price_intervals(run, k)
        head = spec.head
        served_by = None if head is None else ServedBy(head.served[2 * k], head.served[2 * k + 1])
        horizons.append(
            HorizonPrediction(
                name,
                count,
                inputs.close + mean.up * inputs.atr,
                inputs.close - mean.down * inputs.atr,
                mean.up,
                mean.down,
                _pair(out.gru_range, k),
                _pair(out.transformer_range, k),
                high_interval,
                low_interval,
                served_by,
                None if week is None else week.bar_close(bar_open, count),
                Horizon(name).describe(
                    Timeframe(spec.timeframe), count, None if week is None else week.session_bars
                ),
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
        float(served.confidence[0]),
        float(served.p_long[0]),
        float(served.p_short[0]),
        out.model_version,
        spec.fingerprint,
        None if spec.head is None else spec.head.interval_level,
        None
        if spec.head is None
        else {name: spec.head.probability_source(name) for name in PROBABILITIES},
        _shifts(run),
    )


def _shifts(run: Prediction) -> dict[str, float] | None:
    shift = None if run.levels is None else run.levels.probability_shift
    if shift is None:
        return None
    return {name: round(float(v), 6) for name, v in zip(PROBABILITIES, shift, strict=True)}


def question_for(run: Prediction, barrier: Barrier, asset_class: str) -> BarrierQuestion:
    """The barrier asked of this prediction, with the asset class's round-trip costs."""
    served = run.served
    return barrier_question(
        run.spec,
        served.ranges[0],
        float(served.p_long[0]),
        float(served.p_short[0]),
        run.inputs.close,
        run.inputs.atr,
        run.horizon_bars,
        barrier,
        costs_for(asset_class).round_trip,
    )


def signal_response(
    run: Prediction, strategy: Strategy, asset_class: str, custom: BarrierOutcome | None = None
) -> SignalResponse:
    """The live signal; the backtester applies the same rules to batches of predictions. Its
    expected R counts the asset class's trading costs (orchestrator/signals/costs.py).
    `custom`: the outcome of the caller's levels, side and horizon; the signal is then taken on
    them and decided by the barrier model's P(take-profit first) and expected R (None: the
    models' own levels, decided by the calibrated P(win); the barrier block describes them)."""
    spec, out, inputs = run.spec, run.out, run.inputs
    served = run.served
    outcome = custom
    if outcome is None:
        model_side = "long" if out.direction[0] > 0 else "short"
        default = Barrier(
            model_side, spec.horizons.index(spec.label_horizon), spec.tp_atr, spec.sl_atr
        )
        outcome = evaluate(question_for(run, default, asset_class))
    k = spec.horizons.index(outcome.horizon)
    mean = _served_range(run, k)
    signal = build_signal(
        close=inputs.close,
        atr=inputs.atr,
        direction=1.0 if outcome.side == "long" else -1.0,
        confidence=float(served.confidence[0]),
        p_long=float(served.p_long[0]),
        p_short=float(served.p_short[0]),
        up_atr=mean.up,
        down_atr=mean.down,
        tp_atr=outcome.tp_atr,
        sl_atr=outcome.sl_atr,
        cost_r=outcome.cost_r,
        horizon=spec.horizons[k],
        horizon_bars=run.horizon_bars[k],
        strategy=strategy,
        barrier=None if custom is None else BarrierEdge(outcome.p_tp_first, outcome.expected_r),
    )
    p_win_source = (
        _p_win_source(run, strategy, signal.direction) if custom is None else outcome.answered_by
    )
    return SignalResponse(
        run.symbol,
        run.timeframe,
        inputs.bar_time.to_pydatetime(),
        signal,
        strategy,
        float(served.p_long[0]),
        float(served.p_short[0]),
        out.model_version,
        p_win_source,
        outcome,
    )


class BarrierQuery(msgspec.Struct, frozen=True):
    """The /api/signals barrier parameters as given (strings: checked against the bar)."""

    tp: str | None = None
    sl: str | None = None
    tp_price: str | None = None
    sl_price: str | None = None
    horizon: str | None = None
    side: str | None = None

    def given(self) -> bool:
        return any(v is not None for v in msgspec.structs.astuple(self))


def resolve_barrier(query: BarrierQuery, run: Prediction) -> Barrier:
    """The caller's barrier in ATR multiples, checked; 400 naming the parameter otherwise."""
    spec, inputs = run.spec, run.inputs
    horizon = query.horizon or spec.label_horizon
    if horizon not in spec.horizons:
        raise BadParameterError(
            f"horizon must be one of {', '.join(spec.horizons)}, got {horizon!r}", field="horizon"
        )
    if query.side is not None and query.side not in SIDES:
        raise BadParameterError(f"side must be long or short, got {query.side!r}", field="side")
    side = query.side or ("long" if run.out.direction[0] > 0 else "short")
    levels = {}
    for name, default in (("tp", spec.tp_atr), ("sl", spec.sl_atr)):
        multiple, price = getattr(query, name), getattr(query, f"{name}_price")
        if multiple is not None and price is not None:
            raise BadParameterError(
                f"give {name} (ATR multiples) or {name}_price, not both", field=f"{name}_price"
            )
        if price is not None:
            value = level_in_atr(
                f"{name}_price",
                checked_number(f"{name}_price", price),
                inputs.close,
                inputs.atr,
                side,
            )
            levels[name] = checked_distance(f"{name}_price", value)
        elif multiple is not None:
            levels[name] = checked_distance(name, checked_number(name, multiple))
        else:
            levels[name] = default
    return Barrier(side, spec.horizons.index(horizon), levels["tp"], levels["sl"])


def _p_win_source(run: Prediction, strategy: Strategy, direction: str) -> str:
    """What the gate serves for the probability the signal's edge was computed from."""
    head = run.spec.head
    if head is None:
        return "model"
    name = "confidence" if strategy.use_metamodel else f"p_{direction}"
    return head.probability_source(name)


def _barrier_number(description: str, *, atr: bool = True) -> Any:
    bounds = {"minimum": MIN_BARRIER_ATR, "maximum": MAX_BARRIER_ATR} if atr else {}
    return declared(description, one_of=None, type=OpenAPIType.NUMBER, **bounds)


def checked_number(field: str, raw: str) -> float:
    if not _NUMBER.fullmatch(raw):
        raise BadParameterError(f"{field} must be a number, got {raw!r}", field=field)
    return float(raw)


def resolve_strategy(name: str, min_confidence: float | None = None) -> Strategy:
    chosen = STRATEGIES.get(name)
    if chosen is None:
        raise BadParameterError(
            f"unknown strategy {name!r}; choose from {', '.join(STRATEGIES)}", field="strategy"
        )
    if min_confidence is not None:
        if not 0.0 <= min_confidence <= 1.0:
            raise BadParameterError("min_confidence must be within [0, 1]", field="min_confidence")
        chosen = msgspec.structs.replace(chosen, min_confidence=min_confidence)
    return chosen


def encoded_prediction(run: Prediction, horizon: str, week: TradingWeek) -> bytes:
    """The /api/predict body, encoded once per prediction and horizon."""
    return run.encoded_once(f"predict:{horizon}", lambda: prediction_response(run, horizon, week))


def encoded_signal(run: Prediction, strategy: Strategy, asset_class: str) -> bytes:
    """The /api/signals body, encoded once per prediction, strategy and asset class."""
    key = f"signal:{asset_class}:{msgspec.json.encode(strategy).decode()}"
    return run.encoded_once(key, lambda: signal_response(run, strategy, asset_class))


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
                f"horizon must be one of {', '.join(HORIZON_CHOICES)}", field="horizon"
            )
        tf = checked_timeframe(timeframe, SERVED_TIMEFRAMES)
        run = await predictions.latest(sym, tf.value)
        week = await predictions.trading_week(sym, tf.value)
        return Response(encoded_prediction(run, horizon, week), media_type=MediaType.JSON)  # type: ignore[arg-type]

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
        tp: Annotated[str | None, _barrier_number("Take-profit in ATR multiples")] = None,
        sl: Annotated[str | None, _barrier_number("Stop in ATR multiples")] = None,
        tp_price: Annotated[
            str | None,
            _barrier_number(
                "Take-profit as a price instead of tp: above the newest close for a long trade, "
                "below it for a short one",
                atr=False,
            ),
        ] = None,
        sl_price: Annotated[
            str | None,
            _barrier_number(
                "Stop as a price instead of sl: below the newest close for a long trade, above "
                "it for a short one",
                atr=False,
            ),
        ] = None,
        horizon: Annotated[
            str | None,
            declared(
                "The barrier's horizon (default: the models' label horizon)",
                enum=[h.value for h in Horizon],
            ),
        ] = None,
        side: Annotated[
            str | None,
            declared("The barrier's side (default: the signal's direction)", enum=list(SIDES)),
        ] = None,
    ) -> Response[SignalResponse]:
        sym = checked_symbol(symbol)
        tf = checked_timeframe(timeframe, SERVED_TIMEFRAMES)
        chosen = resolve_strategy(
            strategy,
            None if min_confidence is None else checked_number("min_confidence", min_confidence),
        )
        query = BarrierQuery(tp, sl, tp_price, sl_price, horizon, side)
        run = await predictions.latest(sym, tf.value)
        asset_class = await predictions.asset_class(sym)
        if query.given():  # the caller's levels: computed for this request, not kept
            barrier = resolve_barrier(query, run)
            outcome = await predictions.barriers.outcome(question_for(run, barrier, asset_class))
            body = signal_response(run, chosen, asset_class, outcome)
            return Response(msgspec.json.encode(body), media_type=MediaType.JSON)  # type: ignore[arg-type]
        return Response(encoded_signal(run, chosen, asset_class), media_type=MediaType.JSON)  # type: ignore[arg-type]
