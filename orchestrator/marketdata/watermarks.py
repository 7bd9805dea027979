"""Newest stored bar per (symbol, stored timeframe) for requests, read the cheap way.

Every answer must refer to the newest committed bar, so a caller waits for a read that *starts
after it asked*; callers that arrive while a read is in flight join the next one, which covers all
their keys in a single round trip (MAX(ts) per key on the primary key, answered from the index).
Under load one query answers many requests; alone, a request costs one indexed lookup. (The
bar-close poller scans every series at once with BarStore.last_bar_times.)
"""

from __future__ import annotations

import asyncio
from datetime import datetime

from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import Timeframe

StoredKey = tuple[str, Timeframe]  # (symbol, timeframe the bars are stored at)


async def _read(db: Database, keys: list[StoredKey]) -> dict[StoredKey, datetime | None]:
    newest = await BarStore(db).bar_time_dives("MAX", keys)
    return {key: newest.get(key) for key in keys}


class WatermarkReader:
    """Coalesces concurrent freshness checks into one query per round trip."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._waiting: dict[StoredKey, asyncio.Future[datetime | None]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.queries = 0
        self.keys_read = 0

    async def newest(self, symbol: str, stored: Timeframe) -> datetime | None:
        key = (symbol, stored)
        future = self._waiting.get(key)
        if future is None:
            future = self._waiting[key] = asyncio.get_running_loop().create_future()
        if self._reader is None:
            self._reader = asyncio.create_task(self._drain())
        return await asyncio.shield(future)

    async def _drain(self) -> None:
        """Reads until nobody waits; keys that arrive during a read go into the next one."""
        try:
            while self._waiting:
                batch, self._waiting = self._waiting, {}
                try:
                    found = await _read(self._db, list(batch))
                except Exception as exc:
                    for future in batch.values():
                        if not future.done():
                            future.set_exception(exc)
                            future.exception()  # retrieved: each waiter re-raises its own copy
                    continue
                self.queries += 1
                self.keys_read += len(batch)
                for key, future in batch.items():
                    if not future.done():
                        future.set_result(found[key])
        finally:
            self._reader = None
