"""The real series as a replay feed: `make run DATA=real` loads each series without its last
days (`real-data --hold-back-days`) and the replay appends those held-back bars one by one, so
the engine meets bars its models have never seen, and the live quality numbers mean something.
The feed ends with the series."""

from __future__ import annotations

import asyncio

import pandas as pd

from orchestrator.errors import BadParameterError, NotEnoughDataError
from orchestrator.ingest.validate import validate_bars
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.realdata.catalogue import SERIES, RealSeries
from orchestrator.realdata.load import read_series
from orchestrator.realdata.pypi import PyPIClient

BAR_COLUMNS = ["open", "high", "low", "close", "volume"]


class RealFeed:
    """Bars of the real series after the newest stored one, read from the download cache
    (fetched and digest-checked as by `make real-data` when not cached)."""

    def __init__(self, client: PyPIClient, catalogue: tuple[RealSeries, ...] = SERIES) -> None:
        self._client = client
        self._series = {s.symbol: s for s in catalogue}
        self._bars: dict[str, pd.DataFrame] = {}

    def check(self, symbols: list[str]) -> None:
        unknown = [s for s in symbols if s not in self._series]
        if unknown:
            raise BadParameterError(
                f"no real series for {', '.join(unknown)}; use {', '.join(self._series)}",
                field="symbols",
            )

    def timeframe(self, symbol: str) -> Timeframe:
        return self._series[symbol].timeframe

    async def after(self, store: BarStore, symbol: str) -> pd.DataFrame:
        series = self._series[symbol]
        tail = await store.latest_bars(symbol, series.timeframe, 1)
        if tail.empty:
            raise NotEnoughDataError(
                f"{symbol} has no {series.timeframe} bars to continue; load them with "
                "`make real-live-data`"
            )
        bars = await self._all_bars(series)
        after: pd.DataFrame = bars[bars.index > tail.index[-1]]
        return after

    async def _all_bars(self, series: RealSeries) -> pd.DataFrame:
        """The series' valid bars indexed by time (the rows `make real-data` would ingest)."""
        if series.symbol not in self._bars:
            parsed = await asyncio.to_thread(read_series, series, self._client)
            parsed["symbol"], parsed["timeframe"] = series.symbol, series.timeframe.value
            accepted, _ = validate_bars(parsed)
            self._bars[series.symbol] = accepted.set_index(pd.DatetimeIndex(accepted["ts"]))[
                BAR_COLUMNS
            ]
        return self._bars[series.symbol]
