"""Process-wide clients (DB pool, Triton gRPC aio client, Redis), created in the running loop."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import tritonclient.grpc.aio as grpcclient
from redis.asyncio import Redis
from tritonclient.grpc import MAX_GRPC_MESSAGE_SIZE

from orchestrator.inference.barclose import BarCloseEngine
from orchestrator.inference.calls import close_client
from orchestrator.inference.client import SignalModels
from orchestrator.inference.input_regions import InputRegions
from orchestrator.inference.models import ENSEMBLE, SERVED_TIMEFRAMES, served_name
from orchestrator.inference.service import PredictionService
from orchestrator.inference.shared import SharedPredictions
from orchestrator.inference.snapshots import snapshot_file
from orchestrator.lifecycle.exported import sync_registry
from orchestrator.lifecycle.registry import ModelRegistry
from orchestrator.lifecycle.service import Lifecycle
from orchestrator.marketdata.db import Database, DatabaseUnavailableError
from orchestrator.quality.tracker import QualityTracker
from orchestrator.settings import Settings

# gRPC's default reconnect backoff grows to minutes: after a Triton restart the first requests
# would wait for it (seen as ~11 s of 503s). Keep retrying at most every second instead.
_KEEPALIVE = grpcclient.KeepAliveOptions()
TRITON_CHANNEL_ARGS = [
    ("grpc.max_send_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE_SIZE),
    ("grpc.keepalive_time_ms", _KEEPALIVE.keepalive_time_ms),
    ("grpc.keepalive_timeout_ms", _KEEPALIVE.keepalive_timeout_ms),
    ("grpc.keepalive_permit_without_calls", _KEEPALIVE.keepalive_permit_without_calls),
    ("grpc.http2.max_pings_without_data", _KEEPALIVE.http2_max_pings_without_data),
    ("grpc.initial_reconnect_backoff_ms", 200),
    ("grpc.min_reconnect_backoff_ms", 200),
    ("grpc.max_reconnect_backoff_ms", 1000),
]


@dataclass
class Resources:
    settings: Settings
    triton: grpcclient.InferenceServerClient
    redis: Redis
    shared: SharedPredictions
    publish: Callable[[bytes], None] | None = None  # a bar-close event to the other replicas
    _by_timeframe: dict[str, SignalModels] = field(default_factory=dict)
    _db: Database | None = None
    _db_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _engine: BarCloseEngine | None = None
    quality: QualityTracker = field(default_factory=QualityTracker)
    _predictions: PredictionService | None = None
    _registry_synced: bool = False
    # Shared by every model set: request inputs through /dev/shm when Triton runs on this host.
    input_regions: InputRegions | None = None

    @property
    def engine(self) -> BarCloseEngine:
        """The bar-close engine (created on first use, started by the app's lifespan)."""
        if self._engine is None:
            self._engine = BarCloseEngine(
                self.database,
                self.models_for,
                SERVED_TIMEFRAMES,
                poll_interval_s=self.settings.api.bar_poll_interval_s,
                sweeps_in_flight=self.settings.api.sweeps_in_flight,
                shared=self.shared,
                publish=self.publish,
                snapshot_path=self._snapshot_path(),
                snapshot_interval_s=self.settings.api.state_snapshot_interval_s,
                seed_processes=self.settings.api.seed_processes,
            )
            self._engine.on_predictions(self.quality.record)
            self._engine.online_levels = self.quality.levels  # adaptive intervals, probabilities
        return self._engine

    @property
    def predictions(self) -> PredictionService:
        if self._predictions is None:
            self._predictions = PredictionService(self.database, self.models_for, self.engine)
        return self._predictions

    @classmethod
    async def open(
        cls, settings: Settings, redis: Redis, publish: Callable[[bytes], None] | None = None
    ) -> Resources:
        triton = grpcclient.InferenceServerClient(
            settings.triton.grpc_url, channel_args=TRITON_CHANNEL_ARGS
        )
        shared = SharedPredictions(
            redis, namespace=settings.redis.key_prefix, replica_id=uuid.uuid4().hex[:12]
        )
        # Live quality totals are counted once across replicas, in the same Redis namespace.
        quality = QualityTracker(redis, namespace=settings.redis.key_prefix)
        resources = cls(
            settings=settings,
            triton=triton,
            redis=redis,
            shared=shared,
            publish=publish,
            quality=quality,
            input_regions=InputRegions(triton) if settings.triton.uses_shared_memory else None,
        )
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
            models = self._by_timeframe[timeframe] = SignalModels(
                self.triton, timeout_s, ensemble, input_regions=self.input_regions
            )
        return models

    async def database(self) -> Database:
        """The pool, (re)connecting on first use so a late database does not need a restart."""
        if self._db is not None:
            return self._db
        async with self._db_lock:
            if self._db is None:
                self._db = await Database.connect(self.settings.db)
            return self._db

    async def registry(self) -> ModelRegistry:
        """The model registry; the first call registers what the local model repository holds
        (a repository Triton reads from elsewhere is registered with `ml-engine models sync`)."""
        registry = ModelRegistry(await self.database())
        if not self._registry_synced:
            await sync_registry(registry, Path(self.settings.triton.model_repository), "api")
            self._registry_synced = True
        return registry

    async def lifecycle(self) -> Lifecycle:
        """Promotion and rollback over the registry and this API's Triton."""
        return Lifecycle(
            await self.registry(),
            self.triton,
            Path(self.settings.triton.model_repository),
            self.settings.triton.request_timeout_s,
            self.settings.triton.peers,
        )

    def _snapshot_path(self) -> Path | None:
        folder = self.settings.api.state_snapshot_dir
        return snapshot_file(Path(folder), self.settings.api.port) if folder else None

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.close()
        if self._db is not None:
            await self._db.close()
        if self.input_regions is not None:
            await self.input_regions.close(self.settings.triton.request_timeout_s)
        await close_client(self.triton, self.settings.triton.request_timeout_s)
