"""Litestar's rate limiter with O(1) bookkeeping per request.

Litestar's `RateLimitMiddleware` keeps a fixed window per identity but stores the timestamp of
every request in it and decodes, copies and re-encodes that list on each request: O(requests in
the window). Profiled under load (docs/benchmarks.md) it was over a third of a warm
/api/predict's CPU and grew with the allowed rate. Only the list's length is ever used (the limit
check and the RateLimit-* headers), so this subclass stores (count, window reset) instead: same
window, headers, store and configuration (RateLimitConfig.middleware_class).
"""

from __future__ import annotations

import time
from typing import Any

import msgspec
from litestar.middleware.rate_limit import (
    DURATION_VALUES,
    CacheObject,
    RateLimitConfig,
    RateLimitMiddleware,
)
from litestar.stores.base import Store


class CountingRateLimitMiddleware(RateLimitMiddleware):
    async def retrieve_cached_history(self, key: str, store: Store) -> CacheObject:
        now = int(time.time())
        raw = await store.get(key)
        if raw:
            count, reset = msgspec.json.decode(raw, type=tuple[int, int])
            if reset > now:
                return CacheObject(history=range(count), reset=reset)  # type: ignore[arg-type]
        return CacheObject(history=range(0), reset=now + DURATION_VALUES[self.unit])  # type: ignore[arg-type]

    async def set_cached_history(self, key: str, cache_object: CacheObject, store: Store) -> None:
        count = len(cache_object.history) + 1
        cache_object.history = range(count)  # type: ignore[assignment]
        expires_in = max(1, cache_object.reset - int(time.time()))
        await store.set(
            key, msgspec.json.encode((count, cache_object.reset)), expires_in=expires_in
        )


def rate_limit_config(per_minute: int, **options: Any) -> RateLimitConfig:
    return RateLimitConfig(
        rate_limit=("minute", per_minute),
        middleware_class=CountingRateLimitMiddleware,
        **options,
    )
