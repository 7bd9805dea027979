"""A small LRU cache with single-flight: concurrent requests for one key share one computation.

Keys include the latest bar time and the served model version, so a new bar or a model reload
naturally misses; failures are never cached.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable


class SingleFlightCache[K: Hashable, V]:
    def __init__(self, max_entries: int = 1024) -> None:
        self.max_entries = max_entries
        self._values: OrderedDict[K, V] = OrderedDict()
        self._inflight: dict[K, asyncio.Future[V]] = {}
        self.hits = 0
        self.coalesced = 0
        self.misses = 0

    async def get(self, key: K, compute: Callable[[], Awaitable[V]]) -> V:
        if key in self._values:
            self._values.move_to_end(key)
            self.hits += 1
            return self._values[key]
        pending = self._inflight.get(key)
        if pending is not None:
            self.coalesced += 1
            return await asyncio.shield(pending)
        self.misses += 1
        future: asyncio.Future[V] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            value = await compute()
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: waiters re-raise it, nobody else must
            raise
        else:
            future.set_result(value)
            self._values[key] = value
            while len(self._values) > self.max_entries:
                self._values.popitem(last=False)
            return value
        finally:
            del self._inflight[key]

    @property
    def hit_rate(self) -> float:
        total = self.hits + self.coalesced + self.misses
        return (self.hits + self.coalesced) / total if total else 0.0
