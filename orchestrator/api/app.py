"""The application, wired in one place: settings -> resources (lifespan) -> controllers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.config.cors import CORSConfig
from litestar.datastructures import State
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from orchestrator.api import errors
from orchestrator.api.backtests import BacktestController, BacktestJobs
from orchestrator.api.health import HealthController
from orchestrator.api.market import MarketController
from orchestrator.api.predictions import PredictionController
from orchestrator.api.ratelimit import rate_limit_config
from orchestrator.api.resources import Resources
from orchestrator.api.security import AuthMiddleware, rate_limit_identity
from orchestrator.api.stats import RequestLog, StatsController, TimingMiddleware
from orchestrator.api.stream import hub_for_app, stream_socket
from orchestrator.inference.service import PredictionService
from orchestrator.settings import Settings


def _prediction_service(state: State) -> PredictionService:
    resources: Resources = state.resources
    return resources.predictions


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    prometheus = PrometheusConfig(
        app_name="trading_ml_engine", prefix="orchestrator", group_path=True, exclude=["/metrics"]
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        resources = app.state.resources = await Resources.open(settings)
        app.state.request_log = RequestLog()
        app.state.stream = hub_for_app(
            resources,
            poll_interval_s=settings.api.ws_poll_interval_s,
            queue_size=settings.api.ws_queue_size,
        )
        app.state.backtests = BacktestJobs()
        resources.engine.start()
        try:
            yield
        finally:
            await app.state.backtests.close()
            await app.state.stream.close()
            await app.state.resources.close()

    return Litestar(
        route_handlers=[
            HealthController,
            PredictionController,
            MarketController,
            StatsController,
            BacktestController,
            PrometheusController,
            stream_socket,
        ],
        middleware=[
            TimingMiddleware(),
            prometheus.middleware,
            AuthMiddleware(settings.api),
            rate_limit_config(
                settings.api.rate_limit_per_minute,
                identifier_for_request=rate_limit_identity(settings.api),
                exclude=["/health", "/metrics", "/schema"],
            ).middleware,
        ],
        cors_config=CORSConfig(
            allow_origins=list(settings.api.cors_origins),
            allow_headers=["authorization", "x-api-key", "content-type"],
        ),
        request_max_body_size=settings.api.max_body_bytes,
        exception_handlers={Exception: errors.handle},
        lifespan=[lifespan],
        dependencies={"predictions": Provide(_prediction_service, sync_to_thread=False)},
        openapi_config=OpenAPIConfig(title="Trading ML engine", version="0.1.0", path="/schema"),
    )
