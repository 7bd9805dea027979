"""Litestar's rate limiter with one atomic counter per identity and window.

Litestar's `RateLimitMiddleware` keeps a fixed window per identity but stores the timestamp of
every request in it and decodes, copies and re-encodes that list on each request: O(requests in
the window). Profiled under load (docs/benchmarks.md) it was over a third of a warm
/api/predict's CPU. It also reads and then writes the store under a process-wide lock: on Redis,
two round trips that every request waits for in turn, and a read-then-write that two replicas can
interleave (both read 5, both write 6). This subclass keeps the same window, headers, store and
configuration (RateLimitConfig.middleware_class) but counts with one atomic increment: INCR on
Redis (`CounterStore.increment`), a get-and-set in process memory otherwise.
"""

from __future__ import annotations

import time
from typing import Any, Protocol, runtime_checkable

import msgspec
from litestar.exceptions import TooManyRequestsException
from litestar.middleware.rate_limit import (
    DURATION_VALUES,
    CacheObject,
    RateLimitConfig,
    RateLimitMiddleware,
)
from litestar.stores.base import Store
from litestar.types import Receive, Scope, Send


@runtime_checkable
class CounterStore(Protocol):
    async def increment(self, key: str, window_s: int) -> tuple[int, int]:
        """(requests counted in the window including this one, epoch second the window ends)."""


async def increment_in(store: Store, key: str, window_s: int) -> tuple[int, int]:
    """The generic counter for a store without an atomic increment (one process only)."""
    now = int(time.time())
    raw = await store.get(key)
    count, reset = 0, now + window_s
    if raw:
        stored_count, stored_reset = msgspec.json.decode(raw, type=tuple[int, int])
        if stored_reset > now:
            count, reset = stored_count, stored_reset
    count += 1
    await store.set(key, msgspec.json.encode((count, reset)), expires_in=max(1, reset - now))
    return count, reset


class CountingRateLimitMiddleware(RateLimitMiddleware):
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        app = scope["litestar_app"]
        request = app.request_class(scope)
        if await self.should_check_request(request=request):
            store = self.config.get_store_from_app(app)
            key = self.cache_key_from_request(request)
            window_s = DURATION_VALUES[self.unit]
            if isinstance(store, CounterStore):
                count, reset = await store.increment(key, window_s)
            else:
                count, reset = await increment_in(store, key, window_s)
            counted = CacheObject(history=range(min(count, self.max_requests)), reset=reset)  # type: ignore[arg-type]
            if count > self.max_requests:
                headers = self.create_response_headers(counted)
                raise TooManyRequestsException(
                    headers=headers if self.config.set_rate_limit_headers else None
                )
            if self.config.set_rate_limit_headers:
                send = self.create_send_wrapper(send=send, cache_object=counted)
        await self.app(scope, receive, send)


def rate_limit_config(per_minute: int, **options: Any) -> RateLimitConfig:
    return RateLimitConfig(
        rate_limit=("minute", per_minute),
        middleware_class=CountingRateLimitMiddleware,
        **options,
    )
