"""Watched series announced through the real Redis: another replica reads what this one's clients
watch, never its own, and forgets an announcement that expired or was withdrawn."""

from __future__ import annotations

import msgspec
from redis.asyncio import Redis

from orchestrator.inference import shared as shared_module
from orchestrator.inference.shared import SharedPredictions, WatchedSeries


async def test_replicas_read_each_others_watched_series_and_forget_the_expired(
    redis_flushed: str,
) -> None:
    client = Redis.from_url(redis_flushed)
    try:
        first = SharedPredictions(client, namespace="watch-test", replica_id="first")
        second = SharedPredictions(client, namespace="watch-test", replica_id="second")
        watched = frozenset({("BTCUSD", "5m"), ("ETHUSD", "1h")})
        assert first.due(watched)
        await first.announce(watched)
        assert not first.due(watched)  # announced, not due again until WATCH_REFRESH_S
        assert first.due(frozenset({("BTCUSD", "5m")}))  # a change is due at once
        assert await second.watched_elsewhere() == watched
        assert await first.watched_elsewhere() == frozenset()  # never its own

        # A replica that died: its last announcement expired and is ignored.
        stale = WatchedSeries(0.0, [("SOLUSD", "5m")])
        await first.store.announce_watched("dead", stale)
        assert await second.watched_elsewhere() == watched

        await first.announce(frozenset())  # its clients left (or it shut down)
        assert await second.watched_elsewhere() == frozenset()
        raw = await client.hgetall("watch-test:predictions:watched")  # type: ignore[misc]
        assert set(raw) == {b"dead"}
        assert msgspec.msgpack.decode(raw[b"dead"], type=WatchedSeries) == stale
    finally:
        await client.aclose()


async def test_without_redis_nothing_is_announced_or_left_to_others() -> None:
    client = Redis.from_url("redis://127.0.0.1:1", socket_connect_timeout=0.5)
    try:
        alone = SharedPredictions(client, namespace="watch-test", replica_id="alone")
        watched = frozenset({("BTCUSD", "5m")})
        await alone.announce(watched)
        assert alone.redis_errors == 1
        assert not alone.due(watched)  # backing off: serving alone for retry_after_s
        assert await alone.watched_elsewhere() == frozenset()
        assert shared_module.WATCH_TTL_S > shared_module.WATCH_REFRESH_S
    finally:
        await client.aclose()
