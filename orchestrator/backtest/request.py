"""What a backtest asks for, and every check that needs neither the database nor the models;
errors carry the field to change, so the API answers 400/404/422 and the CLI one clear line."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import msgspec

from orchestrator.backtest.engine import BacktestConfig
from orchestrator.errors import BadParameterError, NotEnoughDataError, NotFoundError
from orchestrator.features.spec import FeatureSpec
from orchestrator.marketdata.timeframes import (
    InvalidSymbolError,
    InvalidTimeframeError,
    Timeframe,
    parse_symbol,
    parse_timeframe,
)
from orchestrator.signals.barriers import checked_distance
from orchestrator.signals.strategies import DEFAULT_STRATEGY, STRATEGIES, Strategy


# --- request --------------------------------------------------------------------------------
class BacktestRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What to backtest; naive datetimes are UTC. None means "the strategy's / models' own"."""

    symbol: str
    start: datetime  # first bar (open time) that may signal
    end: datetime  # exclusive
    timeframe: str = "5m"
    strategy: str = DEFAULT_STRATEGY
    min_expected_r: float | None = None
    min_confidence: float | None = None
    min_range_tp_ratio: float | None = None
    use_metamodel: bool | None = None
    horizon: str | None = None  # time stop and range filter horizon; default: the label horizon
    # The caller's take-profit and stop in ATR multiples; the signals are then decided by the
    # barrier model's P(take-profit first) and expected R at these levels. Default: the
    # models' own levels and their calibrated P(win).
    tp_atr: float | None = None
    sl_atr: float | None = None
    fee_rate: float = 0.0  # per side, fraction of notional
    slippage: float = 0.0  # per fill, fraction of price
    allow_overlap: bool = False


class BacktestRequestError(BadParameterError):
    """A request that cannot run as given; `field` names the parameter to change (400)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message, field=field)


class EmptyRangeError(NotEnoughDataError):
    """No bars in the asked range (422)."""

    title = "Cannot backtest"

    def __init__(self, message: str) -> None:
        super().__init__(message, field="start")


class UnknownBacktestSymbolError(NotFoundError):
    """No such symbol in the store (the API answers 404, like the other endpoints)."""

    title = "Unknown symbol"

    def __init__(self, message: str) -> None:
        super().__init__(message, field="symbol")


class InsufficientHistoryError(NotEnoughDataError):
    """Too few bars before the range for the models' warm-up (422)."""

    title = "Cannot backtest"

    def __init__(self, have: int, need: int, message: str) -> None:
        self.have, self.need = have, need
        super().__init__(message, field="start")


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
    if request.min_expected_r is not None:
        edge = request.min_expected_r
        if not (math.isfinite(edge) and -1.0 <= edge <= 10.0):
            raise BacktestRequestError(
                "min_expected_r", "min_expected_r must be a number of R between -1 and 10"
            )
        changes["min_expected_r"] = float(edge)
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
    for name in ("tp_atr", "sl_atr"):
        level = getattr(request, name)
        if level is not None:
            try:
                checked_distance(name, level)  # the rule /api/signals applies to tp and sl
            except BadParameterError as exc:
                raise BacktestRequestError(name, str(exc)) from None
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
