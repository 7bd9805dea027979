"""The replicas' shared state on Redis, through Litestar's stores and channels, made to ride out a
Redis outage.

Litestar's Redis pieces assume Redis stays up: `RedisStore` raises on every call, and the channels
plugin's publish and subscribe workers end at the first connection error and never restart
(litestar 2.25, `ChannelsPlugin._pub_worker/_sub_worker`). Serving must not depend on Redis, so:

- `FallbackStore` answers from a per-process `MemoryStore` while Redis is away (rate limits are
  then counted per replica) and goes back to Redis by itself;
- `ResilientPubSubBackend` drops events it cannot publish (each replica's own poller and the
  shared cache cover a lost event) and re-subscribes after the connection comes back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from datetime import timedelta
from typing import Any, TypeVar

from litestar.channels.backends.redis import RedisChannelsPubSubBackend
from litestar.stores.base import Store
from litestar.stores.memory import MemoryStore
from litestar.stores.redis import RedisStore
from redis.asyncio import Redis
from redis.asyncio.client import PubSub
from redis.exceptions import RedisError

from orchestrator.api.ratelimit import increment_in
from orchestrator.settings import RedisSettings

log = logging.getLogger("orchestrator.redis")

T = TypeVar("T")
# The parent keeps its PubSub in a private attribute and builds it on first use.
_PUB_SUB_ATTRIBUTE = "_RedisChannelsPubSubBackend__pub_sub"
RETRY_AFTER_S = 1.0  # after a failed Redis call, how long to use the fallback before trying again


def redis_client(settings: RedisSettings) -> Redis:
    """One client (and connection pool) per process; connections are made on first use, so it can
    be built before the event loop runs. Calls fail fast (`timeout_s`) when Redis is away."""
    client: Redis = Redis.from_url(
        settings.url,
        socket_timeout=settings.timeout_s,
        socket_connect_timeout=settings.timeout_s,
        health_check_interval=10,
    )
    return client


class FallbackStore(Store):
    """A RedisStore that falls back to process memory while Redis does not answer."""

    def __init__(self, primary: RedisStore, retry_after_s: float = RETRY_AFTER_S) -> None:
        self.primary = primary
        self.fallback = MemoryStore()
        self.retry_after_s = retry_after_s
        self._down_until = 0.0
        self.failures = 0

    @property
    def using_fallback(self) -> bool:
        return time.monotonic() < self._down_until

    async def _call(
        self, primary: Callable[[], Awaitable[T]], fallback: Callable[[], Awaitable[T]]
    ) -> T:
        if not self.using_fallback:
            try:
                return await primary()
            except (RedisError, OSError) as exc:
                self.failures += 1
                log.warning("Redis store unavailable, counting in memory for now: %s", exc)
                self._down_until = time.monotonic() + self.retry_after_s
        return await fallback()

    async def set(
        self, key: str, value: str | bytes, expires_in: int | timedelta | None = None
    ) -> None:
        await self._call(
            lambda: self.primary.set(key, value, expires_in),
            lambda: self.fallback.set(key, value, expires_in),
        )

    async def get(self, key: str, renew_for: int | timedelta | None = None) -> bytes | None:
        return await self._call(
            lambda: self.primary.get(key, renew_for), lambda: self.fallback.get(key, renew_for)
        )

    async def delete(self, key: str) -> None:
        await self._call(lambda: self.primary.delete(key), lambda: self.fallback.delete(key))

    async def delete_all(self) -> None:
        await self._call(self.primary.delete_all, self.fallback.delete_all)

    async def exists(self, key: str) -> bool:
        return await self._call(lambda: self.primary.exists(key), lambda: self.fallback.exists(key))

    async def increment(self, key: str, window_s: int) -> tuple[int, int]:
        """One atomic count for the rate limiter (see ratelimit.py): INCR, and the window's
        expiry set by its first request, in one round trip."""

        async def on_redis() -> tuple[int, int]:
            name = self.primary._make_key(key)
            pipe = self.primary._redis.pipeline(transaction=True)
            pipe.incr(name)
            pipe.expire(name, window_s, nx=True)
            pipe.ttl(name)
            count, _, ttl_s = await pipe.execute()
            return int(count), int(time.time()) + max(1, int(ttl_s))

        return await self._call(on_redis, lambda: increment_in(self.fallback, key, window_s))

    async def expires_in(self, key: str) -> int | None:
        return await self._call(
            lambda: self.primary.expires_in(key), lambda: self.fallback.expires_in(key)
        )


class ResilientPubSubBackend(RedisChannelsPubSubBackend):
    """Redis pub/sub for the channels plugin that outlives Redis restarts."""

    def __init__(self, *, redis: Redis, key_prefix: str, retry_s: float = 0.5) -> None:
        super().__init__(redis=redis, key_prefix=key_prefix)
        self._wanted: set[str] = set()
        self._retry_s = retry_s
        self.publish_failures = 0
        self.reconnects = 0

    async def subscribe(self, channels: Iterable[str]) -> None:
        channels = list(channels)
        self._wanted.update(channels)
        try:
            await super().subscribe(channels)
        except (RedisError, OSError) as exc:  # stream_events subscribes once Redis is back
            log.warning("Redis pub/sub unavailable at startup, retrying: %s", exc)
            self._has_subscribed.set()

    async def unsubscribe(self, channels: Iterable[str]) -> None:
        channels = list(channels)
        self._wanted.difference_update(channels)
        try:
            await super().unsubscribe(channels)
        except (RedisError, OSError):  # a broken connection subscribes to nothing any more
            await self._reset()

    async def on_shutdown(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await super().on_shutdown()

    async def publish(self, data: bytes, channels: Iterable[str]) -> None:
        try:
            await super().publish(data, channels)
        except (RedisError, OSError) as exc:
            self.publish_failures += 1
            log.debug("bar-close event not published (Redis away): %s", exc)

    async def stream_events(self) -> AsyncGenerator[tuple[str, Any], None]:
        while True:
            try:
                missing = self._wanted - {c.decode() for c in self._pub_sub.channels}
                if missing:
                    await super().subscribe(sorted(missing))
                async for event in super().stream_events():
                    yield event
            except (RedisError, OSError) as exc:
                self.reconnects += 1
                log.warning("Redis pub/sub connection lost, reconnecting: %s", exc)
                await self._reset()
                await asyncio.sleep(self._retry_s)

    async def _reset(self) -> None:
        """A fresh PubSub object: the broken one may hold half-read replies."""
        old: PubSub | None = getattr(self, _PUB_SUB_ATTRIBUTE)
        setattr(self, _PUB_SUB_ATTRIBUTE, None)
        if old is not None:
            with contextlib.suppress(RedisError, OSError):
                await old.aclose()  # type: ignore[no-untyped-call]
