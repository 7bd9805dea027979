"""The application, wired in one place: settings -> resources (lifespan) -> controllers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from litestar import Litestar
from litestar.openapi import OpenAPIConfig
from litestar.plugins.prometheus import PrometheusConfig, PrometheusController

from orchestrator.api import errors
from orchestrator.api.health import HealthController
from orchestrator.api.market import MarketController
from orchestrator.api.predictions import PredictionController
from orchestrator.api.resources import Resources
from orchestrator.api.stats import RequestLog, StatsController, TimingMiddleware
from orchestrator.settings import Settings


def create_app(settings: Settings | None = None) -> Litestar:
    settings = settings or Settings.from_env()
    prometheus = PrometheusConfig(
        app_name="trading_ml_engine", prefix="orchestrator", group_path=True, exclude=["/metrics"]
    )

    @asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state.resources = await Resources.open(settings)
        app.state.request_log = RequestLog()
        try:
            yield
        finally:
            await app.state.resources.close()

    return Litestar(
        route_handlers=[
            HealthController,
            PredictionController,
            MarketController,
            StatsController,
            PrometheusController,
        ],
        middleware=[TimingMiddleware(), prometheus.middleware],
        exception_handlers={Exception: errors.handle},
        lifespan=[lifespan],
        openapi_config=OpenAPIConfig(title="Trading ML engine", version="0.1.0", path="/schema"),
    )
