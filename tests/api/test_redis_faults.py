"""Redis failing under the API, on a redis-server of the test's own: predictions keep flowing
(computed locally, rate limits counted in memory), and the shared cache and bar-close events come
back by themselves once Redis is up again."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import msgspec
import pandas as pd
import pytest
import redis.asyncio as aioredis

from orchestrator.api.app import create_app
from orchestrator.api.resources import Resources
from orchestrator.api.shared_state import FallbackStore
from orchestrator.devstack.redis import PrivateRedis
from orchestrator.devstack.triton import TritonServer
from orchestrator.inference.shared import BAR_CLOSE_CHANNEL, BarCloseEvent
from orchestrator.marketdata.db import Database
from orchestrator.settings import ApiSettings, DatabaseSettings, RedisSettings
from tests.api.conftest import api_settings, served
from tests.conftest import TrainedRepository, append_bar, free_ports, until


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    (port,) = free_ports(1)
    server = PrivateRedis(port=port, base=tmp_path / "redis")
    server.start()
    yield server
    server.stop()


def _stamp(ts: pd.Timestamp) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_predictions_flow_without_redis_and_sharing_resumes_by_itself(
    loaded: TrainedRepository,
    clean_db: Database,
    db_settings: DatabaseSettings,
    model_server: TritonServer,
    own_redis: PrivateRedis,
) -> None:
    settings = api_settings(
        db_settings, model_server, own_redis.url, api=ApiSettings(rate_limit_per_minute=10**6)
    )
    settings = msgspec.structs.replace(settings, redis=RedisSettings(url=own_redis.url))
    app = create_app(settings)
    bars = loaded.data[0].bars
    async with served(app) as port, httpx.AsyncClient(timeout=30) as client:
        url = f"http://127.0.0.1:{port}/api/predict/BTCUSD"
        assert (await client.get(url)).status_code == 200
        resources: Resources = app.state.resources
        rate_limits: FallbackStore = app.state.rate_limit_store

        shared_errors, store_failures = resources.shared.redis_errors, rate_limits.failures
        await asyncio.to_thread(own_redis.stop)
        bar_time = _stamp(await append_bar(clean_db, bars, 5, 5e-4))
        statuses = [(await client.get(url)) for _ in range(20)]
        assert {r.status_code for r in statuses} == {200}
        assert statuses[0].json()["bar_time"] == bar_time  # computed here, without Redis
        # Both met Redis failing and served anyway. (Counters, not `available`: the back-off
        # window they open may have closed again by now.)
        assert resources.shared.redis_errors > shared_errors
        assert rate_limits.failures > store_failures

        await asyncio.to_thread(own_redis.start)
        listener = aioredis.Redis.from_url(own_redis.url)
        pubsub = listener.pubsub()
        await pubsub.subscribe(f"{settings.redis.key_prefix}:{BAR_CLOSE_CHANNEL}")
        # Redis answers again; the next sweep shares once the back-off window has passed.
        await until(lambda: resources.shared.available, what="the shared cache's back-off to end")
        bar_time = _stamp(await append_bar(clean_db, bars, 10, 1e-3))
        response = await client.get(url)
        assert response.status_code == 200
        assert response.json()["bar_time"] == bar_time
        # The prediction went to the shared cache and out as a bar-close event again.
        event = None
        for _ in range(50):
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            if message is not None:
                event = msgspec.msgpack.decode(message["data"], type=BarCloseEvent)
                break
        assert event is not None, "no bar-close event after Redis came back"
        assert [p.symbol for p in event.predictions] == ["BTCUSD"]
        assert await listener.keys(f"{settings.redis.key_prefix}:predictions:BTCUSD:*")
        assert resources.shared.available
        await pubsub.aclose()
        await listener.aclose()
