"""The newest prediction of a (symbol, timeframe): what /api/predict, /api/signals and the stream
ask for.

Freshness contract: an answer refers to the newest bar committed in the store when the request
arrived. The check is one coalesced indexed read (see marketdata/watermarks.py); when the bar-close
engine already holds the prediction for that bar and the served model version, that is the
answer. Otherwise the request joins the engine's computation for that bar (single-flight).

While Triton does not answer, a prediction already computed for the newest bar is still served
(its version is the one that computed it); anything that needs inference is a 503.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import pandas as pd

from orchestrator.errors import NotFoundError
from orchestrator.features.online import NotEnoughHistoryError, required_bars
from orchestrator.inference.barclose import BarCloseEngine, Prediction
from orchestrator.inference.client import ModelServiceUnavailableError, Serving, SignalModels
from orchestrator.marketdata.calendars import CalendarStore
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.sessions import TradingWeek, infer_week
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import newest_closed, parse_symbol, parse_timeframe
from orchestrator.marketdata.watermarks import WatermarkReader
from orchestrator.signals.barrier_batch import BarrierBatcher


class UnservedTimeframeError(NotFoundError):
    """No model set is served for the asked timeframe (a 404 that names the fix)."""

    field = "timeframe"


TRADING_WEEK_SPAN = timedelta(weeks=8)
TRADING_WEEK_TTL_S = 6 * 3600.0


class PredictionService:
    def __init__(
        self,
        database: Callable[[], Awaitable[Database]],
        models_for: Callable[[str], SignalModels],
        engine: BarCloseEngine,
    ) -> None:
        self._database = database
        self._models_for = models_for
        self.engine = engine
        self._watermarks: WatermarkReader | None = None
        self.hits = 0  # answered from the engine's latest prediction
        self.joined = 0  # waited for a computation already pending or running
        self.misses = 0  # started a computation
        # Hits answered while Triton could not say what serves: the newest computed prediction
        # kept the endpoint up through an outage (docs/reliability.md).
        self.hits_while_models_down = 0
        self._weeks: dict[tuple[str, str], tuple[float, TradingWeek]] = {}
        # The callers' own take-profit and stop, evaluated together per event-loop turn (one
        # per service: its futures belong to the app's loop).
        self.barriers = BarrierBatcher()

    async def served_models(self, timeframe: str) -> tuple[SignalModels, Serving]:
        """The timeframe's model set and what it serves; UnservedTimeframeError when Triton is
        up but serves no set for that timeframe."""
        models = self._models_for(timeframe)
        try:
            return models, await models.serving()
        except ModelServiceUnavailableError:
            if not await models.absent():
                raise  # Triton is down, restarting or reloading the set: a 503
            raise UnservedTimeframeError(
                f"no {timeframe} models are served ({models.ensemble} is not loaded); train them "
                f'with `make models TIMEFRAMES="{timeframe}"` and restart Triton'
            ) from None

    async def trading_week(self, symbol: str, timeframe: str) -> TradingWeek:
        """When the symbol trades at this timeframe: as the engine's feature state knows it (no
        query), else its stored calendar, else derived from its last TRADING_WEEK_SPAN of bars;
        read once per TRADING_WEEK_TTL_S per key (marketdata/sessions.py, calendars.py)."""
        seeded = self.engine.trading_week((parse_symbol(symbol), parse_timeframe(timeframe)))
        if seeded is not None:
            return seeded
        key = (symbol, timeframe)
        cached = self._weeks.get(key)
        if cached is not None and time.monotonic() - cached[0] < TRADING_WEEK_TTL_S:
            return cached[1]
        tf = parse_timeframe(timeframe)
        database = await self._database()
        stored = await CalendarStore(database).weeks([symbol], tf)
        if symbol in stored:
            self._weeks[key] = (time.monotonic(), stored[symbol])
            return stored[symbol]
        store = BarStore(database)
        newest = await store.last_bar_time(symbol, tf)
        if newest is None:
            return TradingWeek(tf.value, [])
        bars = await store.bars_between(symbol, tf, newest - TRADING_WEEK_SPAN, None)
        week = infer_week(pd.DatetimeIndex(bars.index), tf)
        self._weeks[key] = (time.monotonic(), week)
        return week

    async def asset_class(self, symbol: str) -> str:
        """The symbol's asset class (its trading costs); cached per pool by BarStore."""
        info = await BarStore(await self._database()).get_symbol(symbol)
        return info.asset_class

    async def latest(self, symbol: str, timeframe: str) -> Prediction:
        sym, tf = parse_symbol(symbol), parse_timeframe(timeframe)
        triton_down: ModelServiceUnavailableError | None = None
        serving: Serving | None = None
        try:
            models, serving = await self.served_models(tf.value)
        except ModelServiceUnavailableError as exc:
            models, triton_down = self._models_for(tf.value), exc
        db = await self._database()
        if self._watermarks is None:
            self._watermarks = WatermarkReader(db)
        source = self.engine.series.source((sym, tf))  # known once the poller saw its bars
        if source is None:
            source = await BarStore(db).source_timeframe(sym, tf)  # 404 for an unknown symbol
        newest = await self._watermarks.newest(sym, source)
        if newest is None:
            raise NotEnoughHistoryError(0, required_bars(await models.spec()))
        key, target = (sym, tf), newest_closed(newest, source, tf)
        version = "" if serving is None else serving.for_bar(target)
        current = self.engine.latest.get(key)
        if (
            current is not None
            and current.bar_time == target
            and (current.version == version or triton_down is not None)
        ):
            self.hits += 1
            if triton_down is not None:
                self.hits_while_models_down += 1
            return current
        if triton_down is not None:
            raise triton_down
        future, joined = self.engine.request(key, target)
        if joined:
            self.joined += 1
        else:
            self.misses += 1
        return await asyncio.shield(future)

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.joined + self.misses
        return (self.hits + self.joined) / total if total else 0.0

    @property
    def freshness_reads(self) -> tuple[int, int]:
        """(queries, keys answered): how well concurrent freshness checks coalesce."""
        reader = self._watermarks
        return (reader.queries, reader.keys_read) if reader is not None else (0, 0)
