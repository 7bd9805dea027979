"""History and indicators, from the store and the shared feature pipeline."""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Annotated

import msgspec
import numpy as np
from litestar import Controller, get
from litestar.datastructures import State
from litestar.params import FromPath, FromQuery, Parameter

from orchestrator.api.errors import MARKET_ERRORS, BadParameterError
from orchestrator.features.indicators import FEATURE_NAMES, LOOKBACK_BARS, compute_features
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import parse_symbol, parse_timeframe

MAX_LIMIT = 10_000
INDICATORS = (*FEATURE_NAMES, "atr")


class Bar(msgspec.Struct):
    time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


class HistoryResponse(msgspec.Struct):
    symbol: str
    timeframe: str
    bars: list[Bar]


class IndicatorsResponse(msgspec.Struct):
    symbol: str
    timeframe: str
    times: list[datetime]
    values: dict[str, list[float | None]]


def _limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadParameterError("limit", f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


class MarketController(Controller):
    path = "/api"
    tags = ["market data"]  # noqa: RUF012

    @get(
        "/history/{symbol:str}",
        summary="OHLCV bars from the store (newest `limit`, or a range)",
        responses=MARKET_ERRORS,
    )
    async def history(
        self,
        state: State,
        symbol: FromPath[str],
        limit: FromQuery[int] = 500,
        timeframe: FromQuery[str] = "5m",
        start: FromQuery[datetime | None] = None,
        end: FromQuery[datetime | None] = None,
    ) -> HistoryResponse:
        sym, tf = parse_symbol(symbol), parse_timeframe(timeframe)
        store = BarStore(await state.resources.database())
        if start is not None or end is not None:
            if start is None or end is None:
                raise BadParameterError("start", "give both start and end (ISO 8601), or neither")
            if end <= start:
                raise BadParameterError("end", "end must be after start")
            frame = (await store.bars_between(sym, tf, start, end)).iloc[: _limit(limit)]
        else:
            frame = await store.latest_bars(sym, tf, _limit(limit))
        bars = [
            Bar(ts.to_pydatetime(), *row)
            for ts, row in zip(
                frame.index,
                frame[["open", "high", "low", "close", "volume"]].to_numpy().tolist(),
                strict=True,
            )
        ]
        return HistoryResponse(sym, tf.value, bars)

    @get(
        "/indicators/{symbol:str}",
        summary="Indicator values from the models' feature pipeline",
        responses=MARKET_ERRORS,
    )
    async def indicators(
        self,
        state: State,
        symbol: FromPath[str],
        indicators: Annotated[str, Parameter(description="comma-separated names")] = "rsi,macd,atr",
        timeframe: FromQuery[str] = "5m",
        limit: FromQuery[int] = 100,
    ) -> IndicatorsResponse:
        sym, tf = parse_symbol(symbol), parse_timeframe(timeframe)
        names = [n.strip().lower() for n in indicators.split(",") if n.strip()]
        unknown = [n for n in names if n not in INDICATORS]
        if unknown or not names:
            raise BadParameterError(
                "indicators",
                f"unknown indicator(s) {', '.join(unknown) or '(none given)'}; "
                f"valid: {', '.join(INDICATORS)}",
            )
        store = BarStore(await state.resources.database())
        bars = await store.latest_bars(sym, tf, _limit(limit) + LOOKBACK_BARS)
        # Up to ~10,600 bars of pandas-ta work: off the event loop, like /api/predict's seeds.
        features = (await asyncio.to_thread(compute_features, bars)).iloc[-limit:]
        values = {
            name: [None if not np.isfinite(v) else float(v) for v in features[name].to_numpy()]
            for name in names
        }
        return IndicatorsResponse(
            sym, tf.value, [t.to_pydatetime() for t in features.index], values
        )
