"""Process-wide clients (DB pool, Triton gRPC aio client), created inside the running loop."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field

import tritonclient.grpc.aio as grpcclient

from orchestrator.inference.barclose import BarCloseEngine
from orchestrator.inference.client import SignalModels
from orchestrator.inference.models import ENSEMBLE, SERVED_TIMEFRAMES, served_name
from orchestrator.inference.service import PredictionService
from orchestrator.marketdata.db import Database, DatabaseUnavailableError
from orchestrator.settings import Settings


@dataclass
class Resources:
    settings: Settings
    triton: grpcclient.InferenceServerClient
    _by_timeframe: dict[str, SignalModels] = field(default_factory=dict)
    _db: Database | None = None
    _db_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _engine: BarCloseEngine | None = None
    _predictions: PredictionService | None = None

    @property
    def engine(self) -> BarCloseEngine:
        """The bar-close engine (created on first use, started by the app's lifespan)."""
        if self._engine is None:
            self._engine = BarCloseEngine(
                self.database,
                self.models_for,
                SERVED_TIMEFRAMES,
                poll_interval_s=self.settings.api.bar_poll_interval_s,
            )
        return self._engine

    @property
    def predictions(self) -> PredictionService:
        if self._predictions is None:
            self._predictions = PredictionService(self.database, self.models_for, self.engine)
        return self._predictions

    @classmethod
    async def open(cls, settings: Settings) -> Resources:
        triton = grpcclient.InferenceServerClient(settings.triton.grpc_url)
        resources = cls(settings=settings, triton=triton)
        # The service starts anyway when the database is down: /health reports it, requests retry.
        with contextlib.suppress(DatabaseUnavailableError):
            await resources.database()
        return resources

    def models_for(self, timeframe: str) -> SignalModels:
        """The model set trained on `timeframe` (signal_ensemble, signal_ensemble_15m, ...)."""
        models = self._by_timeframe.get(timeframe)
        if models is None:
            timeout_s = self.settings.triton.request_timeout_s
            ensemble = served_name(ENSEMBLE, timeframe)
            models = self._by_timeframe[timeframe] = SignalModels(self.triton, timeout_s, ensemble)
        return models

    async def database(self) -> Database:
        """The pool, (re)connecting on first use so a late database does not need a restart."""
        if self._db is not None:
            return self._db
        async with self._db_lock:
            if self._db is None:
                self._db = await Database.connect(self.settings.db)
            return self._db

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.close()
        if self._db is not None:
            await self._db.close()
        await self.triton.close()
