"""Market replay: keeps appending bars after each symbol's last stored bar, one bar per symbol
every `interval_s`, so predictions, signals and the WebSocket stream visibly move.

Where the bars come from is a `BarFeed`. The demo feed continues the synthetic markets with the
same generator as the demo data (its own seed per start time), rescaled so the first new open
equals the last stored close, on the market's calendar. The real feed (orchestrator/realdata/
replay.py) appends the real series' held-back tail, which ends.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Protocol

import numpy as np
import pandas as pd

from orchestrator.demo.generator import MARKETS, generate_bars, round_to_tick
from orchestrator.errors import BadParameterError, NotEnoughDataError
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database, Retry
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import Timeframe

log = logging.getLogger("orchestrator.replay")
CHUNK_DAYS = 3.0


def continuation(symbol: str, last_ts: pd.Timestamp, last_close: float) -> pd.DataFrame:
    """The next few days of bars after `last_ts`, starting from `last_close`."""
    spec = MARKETS[symbol]
    step = pd.Timedelta(minutes=5)
    end = last_ts + step + pd.Timedelta(days=CHUNK_DAYS)
    frame = generate_bars(symbol, days=CHUNK_DAYS, end=end, seed=int(last_ts.timestamp()) % 2**31)
    frame = frame[frame.index > last_ts]
    scale = last_close / float(frame["open"].iloc[0])
    for column in ("open", "high", "low", "close"):
        prices = round_to_tick(frame[column].to_numpy() * scale, spec.tick_size)
        frame[column] = np.maximum(prices, spec.tick_size)
    return frame


class BarFeed(Protocol):
    def check(self, symbols: list[str]) -> None:
        """Raises ValueError naming the symbols this feed has no bars for."""

    def timeframe(self, symbol: str) -> Timeframe: ...

    async def after(self, store: BarStore, symbol: str) -> pd.DataFrame:
        """The next bars after the symbol's newest stored one (empty: the feed has ended)."""
        ...


class DemoFeed:
    """Synthetic 5m bars, forever."""

    def check(self, symbols: list[str]) -> None:
        unknown = [s for s in symbols if s not in MARKETS]
        if unknown:
            raise BadParameterError(
                f"no demo market for {', '.join(unknown)}; use {', '.join(MARKETS)}",
                field="symbols",
            )

    def timeframe(self, symbol: str) -> Timeframe:
        return Timeframe.M5

    async def after(self, store: BarStore, symbol: str) -> pd.DataFrame:
        tail = await store.latest_bars(symbol, Timeframe.M5, 1)
        if tail.empty:
            raise NotEnoughDataError(
                f"{symbol} has no bars to continue; load them with `make demo-data`"
            )
        return continuation(symbol, pd.Timestamp(tail.index[-1]), float(tail["close"].iloc[-1]))


class Replay:
    """Appends bars until every feed has ended (the demo's never does); while the database is
    away each step is retried with backoff (the same bars, so a restart of the server leaves no
    gap and no duplicate)."""

    def __init__(
        self,
        db: Database,
        symbols: list[str],
        retry: Retry | None = None,
        feed: BarFeed | None = None,
    ) -> None:
        self.feed: BarFeed = feed or DemoFeed()
        self.feed.check(symbols)
        self.db = db
        self.symbols = symbols
        self.retry = retry or Retry(give_up_after_s=None)
        # Bars still to append per symbol; one leaves its queue only once it is written.
        self._pending: dict[str, deque[tuple[pd.Timestamp, pd.Series]]] = {}
        self.ended: set[str] = set()  # symbols whose feed has no more bars
        self.appended = 0

    async def _next_bars(self, symbol: str) -> deque[tuple[pd.Timestamp, pd.Series]]:
        frame = await self.feed.after(BarStore(self.db), symbol)
        bars = (bar for _, bar in frame.iterrows())
        return deque(zip(pd.DatetimeIndex(frame.index), bars, strict=True))

    async def step(self) -> pd.DataFrame:
        """Appends the next bar of every symbol whose feed goes on; returns what was written. A
        step that fails consumes nothing: the next one writes the same bars."""
        rows = []
        for symbol in self.symbols:
            if symbol in self.ended:
                continue
            pending = self._pending.get(symbol)
            if not pending:
                self._pending[symbol] = pending = await self._next_bars(symbol)
            if not pending:
                self.ended.add(symbol)
                continue
            ts, bar = pending[0]
            rows.append(
                {"ts": ts, "symbol": symbol, "timeframe": self.feed.timeframe(symbol).value}
                | bar.to_dict()
            )
        frame = pd.DataFrame(rows)
        if frame.empty:
            return frame
        # The symbols exist already (their last bars were read above): nothing to register.
        # No retry inside: run() retries the whole step, reads included.
        await write_bars(self.db, frame, {}, show_progress=False, retry_for_s=0)
        for symbol in frame["symbol"]:
            self._pending[symbol].popleft()
        self.appended += len(frame)
        return frame

    async def run(self, interval_s: float, steps: int | None = None) -> None:
        done = 0
        while steps is None or done < steps:
            frame = await self.retry.run(self.step, what="replay", log=log)
            if frame.empty:
                print("replay: every series is replayed to its end", flush=True)
                return
            done += 1
            latest = ", ".join(
                f"{r.symbol} {r.ts:%Y-%m-%d %H:%M} close {r.close}" for r in frame.itertuples()
            )
            log.info("replay bar %d: %s", done, latest)
            print(f"replay bar {done}: {latest}", flush=True)
            if steps is None or done < steps:
                await asyncio.sleep(interval_s)
