"""Market replay: keeps appending demo bars after each symbol's last stored bar, one bar per
symbol every `interval_s`, so predictions, signals and the WebSocket stream visibly move.

The continuation comes from the same generator as the demo data (its own seed per start time),
rescaled so the first new open equals the last stored close, and follows the market's calendar.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque

import numpy as np
import pandas as pd

from orchestrator.demo.generator import MARKETS, generate_bars, round_to_tick
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


class Replay:
    """Appends bars forever; while the database is away each step is retried with backoff (the
    same bars, so a restart of the server leaves no gap and no duplicate)."""

    def __init__(self, db: Database, symbols: list[str], retry: Retry | None = None) -> None:
        unknown = [s for s in symbols if s not in MARKETS]
        if unknown:
            raise ValueError(f"no demo market for {', '.join(unknown)}; use {', '.join(MARKETS)}")
        self.db = db
        self.symbols = symbols
        self.retry = retry or Retry(give_up_after_s=None)
        # Bars still to append per symbol; one leaves its queue only once it is written.
        self._pending: dict[str, deque[tuple[pd.Timestamp, pd.Series]]] = {}
        self.appended = 0

    async def _next_bars(self, symbol: str) -> deque[tuple[pd.Timestamp, pd.Series]]:
        store = BarStore(self.db)
        tail = await store.latest_bars(symbol, Timeframe.M5, 1)
        if tail.empty:
            raise ValueError(f"{symbol} has no bars to continue; load them with `make demo-data`")
        last_ts = pd.Timestamp(tail.index[-1])
        frame = continuation(symbol, last_ts, float(tail["close"].iloc[-1]))
        bars = (bar for _, bar in frame.iterrows())
        return deque(zip(pd.DatetimeIndex(frame.index), bars, strict=True))

    async def step(self) -> pd.DataFrame:
        """Appends the next bar of every symbol; returns what was written. A step that fails
        consumes nothing: the next one writes the same bars."""
        rows = []
        for symbol in self.symbols:
            pending = self._pending.get(symbol)
            if not pending:
                self._pending[symbol] = pending = await self._next_bars(symbol)
            ts, bar = pending[0]
            rows.append({"ts": ts, "symbol": symbol, "timeframe": "5m", **bar.to_dict()})
        frame = pd.DataFrame(rows)
        # The symbols exist already (their last bars were read above): nothing to register.
        # No retry inside: run() retries the whole step, reads included.
        await write_bars(self.db, frame, {}, show_progress=False, retry_for_s=0)
        for symbol in self.symbols:
            self._pending[symbol].popleft()
        self.appended += len(frame)
        return frame

    async def run(self, interval_s: float, steps: int | None = None) -> None:
        done = 0
        while steps is None or done < steps:
            frame = await self.retry.run(self.step, what="replay", log=log)
            done += 1
            latest = ", ".join(
                f"{r.symbol} {r.ts:%Y-%m-%d %H:%M} close {r.close}" for r in frame.itertuples()
            )
            log.info("replay bar %d: %s", done, latest)
            print(f"replay bar {done}: {latest}", flush=True)
            if steps is None or done < steps:
                await asyncio.sleep(interval_s)
