"""The application, wired in one place: settings -> resources (lifespan) -> controllers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.channels import ChannelsPlugin
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import NamedDependency, Provide
from litestar.openapi import OpenAPIConfig
from litestar.plugins.prometheus import PrometheusConfig
from litestar.stores.redis import RedisStore

from orchestrator.api import errors
from orchestrator.api.backtests import BacktestController
from orchestrator.api.closed_structs import ClosedStructSchemaPlugin
from orchestrator.api.dashboard import PATH as DASHBOARD_PATH
from orchestrator.api.dashboard import dashboard_router
from orchestrator.api.health import HealthController
from orchestrator.api.indicators import IndicatorsController
from orchestrator.api.market import MarketController
from orchestrator.api.models import ModelsController
from orchestrator.api.options import complete_allow_header
from orchestrator.api.predictions import PredictionController
from orchestrator.api.ratelimit import rate_limit_config
from orchestrator.api.resources import Resources
from orchestrator.api.security import AuthMiddleware, rate_limit_identity
from orchestrator.api.shared_state import (
    FallbackStore,
    ResilientPubSubBackend,
    redis_client,
)
from orchestrator.api.stats import (
    MetricsController,
    ModelStatsReader,
    RequestLog,
    StatsController,
    TimingMiddleware,
)
from orchestrator.api.stream import hub_for_app, stream_socket
from orchestrator.inference.service import PredictionService
from orchestrator.inference.shared import BAR_CLOSE_CHANNEL
from orchestrator.jobs.service import BacktestJobService
from orchestrator.jobs.settings import JobSettings
from orchestrator.lifecycle.drift import DriftRetrainer
from orchestrator.lifecycle.retraining import RetrainSettings
from orchestrator.settings import Settings


def _resources(state: State) -> Resources:
    resources: Resources = state.resources
    return resources


def _prediction_service(resources: NamedDependency[Resources]) -> PredictionService:
    return resources.predictions


def _backtest_jobs(state: State) -> BacktestJobService:
    jobs: BacktestJobService = state.backtest_jobs
    return jobs


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    job_settings = JobSettings.from_env()
    retrain_settings = RetrainSettings.from_env()
    prometheus = PrometheusConfig(
        app_name="trading_ml_engine", prefix="orchestrator", group_path=True, exclude=["/metrics"]
    )

    # Shared by every replica: rate-limit counters, predictions, bar-close events (Redis).
    redis = redis_client(settings.redis)
    prefix = settings.redis.key_prefix
    bar_close = f"{prefix}:{BAR_CLOSE_CHANNEL}"  # one deployment's replicas share a prefix
    rate_limits = FallbackStore(RedisStore(redis, namespace=f"{prefix}:ratelimit"))
    channels = ChannelsPlugin(
        backend=ResilientPubSubBackend(redis=redis, key_prefix=f"{prefix}:channels"),
        channels=[bar_close],
    )

    def publish(event: bytes) -> None:
        channels.publish(event, bar_close)

    async def receive_bar_close_events(resources: Resources) -> None:
        async with channels.start_subscription([bar_close]) as subscriber:
            async for payload in subscriber.iter_events():
                try:
                    await resources.engine.receive(payload)
                except Exception:  # one bad event must not end the subscription
                    logging.getLogger("orchestrator.shared").exception("bar-close event failed")

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        resources = app.state.resources = await Resources.open(settings, redis, publish)
        app.state.rate_limit_store = rate_limits
        app.state.request_log = RequestLog()
        app.state.model_stats = ModelStatsReader()
        app.state.stream = hub_for_app(
            resources,
            poll_interval_s=settings.api.ws_poll_interval_s,
            queue_size=settings.api.ws_queue_size,
        )
        app.state.backtest_jobs = BacktestJobService(
            resources.database, settings.redis, job_settings
        )
        resources.quality.on_drift = DriftRetrainer(
            app.state.backtest_jobs, resources.database, retrain_settings
        )
        resources.engine.start()
        events = asyncio.create_task(receive_bar_close_events(resources), name="bar-close-events")
        quality = asyncio.create_task(resources.quality.run(resources.database), name="quality")
        try:
            yield
        finally:
            for task in (events, quality):
                task.cancel()
            for task in (events, quality):
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await app.state.backtest_jobs.close()
            await app.state.stream.close()
            await app.state.resources.close()
            await redis.aclose()

    return Litestar(
        route_handlers=[
            HealthController,
            PredictionController,
            MarketController,
            IndicatorsController,
            StatsController,
            ModelsController,
            BacktestController,
            MetricsController,
            stream_socket,
            dashboard_router(),
        ],
        middleware=[
            TimingMiddleware(),
            prometheus.middleware,
            AuthMiddleware(settings.api),
            rate_limit_config(
                settings.api.rate_limit_per_minute,
                identifier_for_request=rate_limit_identity(settings.api),
                exclude=["/health", "/metrics", "/schema", DASHBOARD_PATH],
            ).middleware,
        ],
        cors_config=CORSConfig(
            allow_origins=list(settings.api.cors_origins),
            allow_headers=["authorization", "x-api-key", "content-type"],
        ),
        request_max_body_size=settings.api.max_body_bytes,
        exception_handlers=errors.EXCEPTION_HANDLERS,
        lifespan=[lifespan],
        before_send=[complete_allow_header],
        plugins=[channels, ClosedStructSchemaPlugin()],
        stores={"rate_limit": rate_limits},
        dependencies={
            "resources": Provide(_resources, sync_to_thread=False),
            "predictions": Provide(_prediction_service, sync_to_thread=False),
            "backtest_jobs": Provide(_backtest_jobs, sync_to_thread=False),
        },
        openapi_config=OpenAPIConfig(title="Trading ML engine", version="0.1.0", path="/schema"),
    )
