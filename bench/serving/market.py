"""The benchmark's market data: symbols BSV0000.., seeding them with generated 5m bars through
the ingest writer, `BarBook` (the next bar of every series), `BarWriter` (INSERT then COMMIT,
timed from the COMMIT) and removing every row of the benchmark symbols afterwards.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncmy
import numpy as np
import pandas as pd

from bench.serving.common import INSERT_BAR, PREFIX, STEP
from orchestrator.demo.generator import generate_bars
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import DatabaseSettings


def symbol_names(count: int) -> list[str]:
    return [f"{PREFIX}{i:04d}" for i in range(count)]


# --- bars -----------------------------------------------------------------------------------
@dataclass
class BarBook:
    """The newest bar of every benchmark symbol, so the next bar continues each series."""

    last: dict[str, tuple[pd.Timestamp, float]]
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(2025))

    def advance(self, symbols: list[str]) -> tuple[list[tuple[Any, ...]], dict[str, datetime]]:
        """Rows for one new 5m bar per symbol, and each symbol's new bar time."""
        rows, times = [], {}
        for symbol in symbols:
            ts, close = self.last[symbol]
            ts = ts + STEP
            new = round(close * (1 + self.rng.normal(0, 0.001)), 2)
            high = round(max(close, new) * 1.0004, 2)
            low = round(min(close, new) * 0.9996, 2)
            rows.append(
                (symbol, "5m", ts.strftime("%Y-%m-%d %H:%M:%S"), close, high, low, new, 3.0)
            )
            self.last[symbol] = (ts, new)
            times[symbol] = ts.to_pydatetime()
        return rows, times


async def delete_symbols(db: Database, symbols: list[str]) -> None:
    """Every row of the benchmark symbols, in every table with a `symbol` column (the engine
    may add tables, e.g. bar revisions), `symbols` last because the others refer to it."""
    rows = await db.fetchall(
        "SELECT c.TABLE_NAME FROM information_schema.COLUMNS c"
        " JOIN information_schema.TABLES t"
        " ON t.TABLE_SCHEMA = c.TABLE_SCHEMA AND t.TABLE_NAME = c.TABLE_NAME"
        " WHERE c.TABLE_SCHEMA = DATABASE() AND c.COLUMN_NAME = 'symbol'"
        " AND t.TABLE_TYPE = 'BASE TABLE'",
        (),
    )
    tables = sorted({str(r[0]) for r in rows}, key=lambda name: (name == "symbols", name))
    for start in range(0, len(symbols), 100):
        chunk = symbols[start : start + 100]
        marks = ",".join(["%s"] * len(chunk))
        async with db.transaction() as conn, conn.cursor() as cur:
            for table in tables:
                await cur.execute(f"DELETE FROM `{table}` WHERE symbol IN ({marks})", chunk)


async def seed(
    db: Database, symbols: list[str], bars_per_symbol: int, timeframe: Timeframe = Timeframe.M5
) -> BarBook:
    """Each symbol gets its own generated series (seeded by its index and the timeframe),
    written by the ingest writer like any other bars."""
    frames, last = [], {}
    offset = 1000 if timeframe == Timeframe.M5 else 1000 + 100_000 * timeframe.seconds
    for i, symbol in enumerate(symbols):
        bars = generate_bars("BTCUSD", bars=bars_per_symbol, seed=offset + i, timeframe=timeframe)
        frames.append(bars.reset_index().assign(symbol=symbol, timeframe=timeframe.value))
        last[symbol] = (bars.index[-1], float(bars["close"].iloc[-1]))
    info = {s: SymbolInfo(s, "crypto", 0.01, description="serving benchmark") for s in symbols}
    await write_bars(db, pd.concat(frames, ignore_index=True), info, show_progress=False)
    return BarBook(last)


class BarWriter:
    """One plain asyncmy connection: INSERT the new bars, then COMMIT, timed from the COMMIT."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn

    @classmethod
    async def connect(cls, settings: DatabaseSettings) -> BarWriter:
        conn = await asyncmy.connect(
            host=settings.host,
            port=settings.port,
            user=settings.user,
            password=settings.password,
            database=settings.database,
            autocommit=False,
            init_command="SET time_zone = '+00:00'",
        )
        return cls(conn)

    async def write(self, rows: list[tuple[Any, ...]]) -> tuple[float, float]:
        """(perf_counter when COMMIT was sent, COMMIT round trip in ms)."""
        async with self.conn.cursor() as cur:
            await cur.executemany(INSERT_BAR, rows)
        sent = time.perf_counter()
        await self.conn.commit()
        return sent, (time.perf_counter() - sent) * 1e3

    async def close(self) -> None:
        await self.conn.ensure_closed()
