"""GET /api/stats (what an operator looks at) and GET /metrics (Prometheus, Litestar's plugin,
documented as the text exposition format it serves).

Request latencies are kept in a bounded window per route by a small ASGI middleware; Triton's
own statistics give each model's average dynamic batch size and the loaded versions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math
import os
import time
from collections import deque
from typing import Any

import msgspec
import numpy as np
from asyncmy.errors import Error as MySQLError
from litestar import Controller, MediaType, Response, get
from litestar.datastructures import State
from litestar.di import NamedDependency
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.plugins.prometheus import PrometheusController
from litestar.types import ASGIApp, Receive, Scope, Send
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from tritonclient.utils import InferenceServerException

from orchestrator.api.errors import error_responses
from orchestrator.api.resources import Resources
from orchestrator.api.stream import StreamSummary
from orchestrator.errors import EngineError
from orchestrator.jobs.runs import RunStore
from orchestrator.lifecycle.metrics import refresh_gauges
from orchestrator.quality.tracker import VersionQuality

WINDOW = 10_000
MODEL_STATS_MAX_AGE_S = 1.0  # /api/stats reads Triton's counters at most this often
LIFECYCLE_GAUGES_TIMEOUT_S = 1.0  # a slow registry read leaves the gauges as they were
log = logging.getLogger("orchestrator.api")


class RequestLog:
    def __init__(self) -> None:
        self.total = 0
        self.by_status: dict[int, int] = {}
        self.latencies_ms: deque[float] = deque(maxlen=WINDOW)
        self.started_at = time.time()

    def record(self, status: int, elapsed_ms: float) -> None:
        self.total += 1
        self.by_status[status] = self.by_status.get(status, 0) + 1
        self.latencies_ms.append(elapsed_ms)


class TimingMiddleware(ASGIMiddleware):
    """Times every /api request into app.state.request_log."""

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        if scope["type"] != ScopeType.HTTP or not str(scope.get("path", "")).startswith("/api"):
            await next_app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def capture(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await next_app(scope, receive, capture)
        finally:
            log: RequestLog = scope["app"].state.request_log
            log.record(status, (time.perf_counter() - started) * 1e3)


class LatencySummary(msgspec.Struct):
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    window: int


class ModelStats(msgspec.Struct):
    name: str
    versions: list[str]
    inferences: int
    executions: int
    avg_batch_size: float | None
    avg_infer_ms: float | None


class HeapSummary(msgspec.Struct):
    """The garbage collector kept off the sweeps (inference/heap.py)."""

    freezes: int  # sweeps (or runs of overlapping ones) whose survivors were frozen
    frozen_objects: int  # left out of every collection, counted at the last full one
    full_collections: int  # walks of the whole heap, between sweeps, about once an hour
    last_full_collection_ms: float  # the event loop stood still this long for the last one
    cycles_collected: int  # objects those walks found unreachable (leaked until then)


class BarCloseSummary(msgspec.Struct):
    """The bar-close engine: sweeps over the symbols whose bar closed, and how features were
    brought up to date (incremental steps vs full recomputes)."""

    sweeps: int
    sweeps_overlapped: int  # started while another sweep waited for Triton (pipelined)
    predictions: int
    triton_requests: int
    feature_steps: int  # bars folded into a feature state in O(1)
    feature_seeds: int  # full recomputes: restart, spec change, corrected bar
    # Wall time per phase of the sweeps since start (claims, features, inputs, triton, head,
    # share, listeners; features.read and features.step are parts of features), ms: where a
    # sweep's time goes.
    phase_ms: dict[str, float]
    states_resumed: int  # taken from the feature-state snapshot after a restart (not seeded)
    states_resumed_from_peers: int  # of those: from another replica's snapshot in the folder
    snapshot_refused: int  # snapshot states of another spec or an older series revision
    snapshots_saved: int
    last_snapshot_ms: float  # writing the last snapshot
    corrections: int  # stored bars that no longer continued a state
    errors: int  # keys a sweep failed to answer (not counting not_enough_history)
    not_enough_history: int  # keys too young to predict yet (expected; not an error)
    triton_failures: int  # of the errors: the Triton request failed
    database_failures: int  # of the errors: the bars could not be read
    polls: int
    sweeping: bool  # a sweep is running or queued (False: every bar seen so far is done)
    last_sweep_keys: int
    last_sweep_at: float  # wall clock (epoch s) when it started
    last_sweep_ms: float
    freshness_queries: int  # coalesced reads of the newest bar for requests
    freshness_keys: int  # request keys those reads answered
    heap: HeapSummary


class SharedSummary(msgspec.Struct):
    """What this replica shares with the others through Redis (docs/reliability.md)."""

    replica_id: str
    redis_available: bool  # False for a second after a failed Redis call: serving alone
    cached_predictions_used: int  # computed by another replica, read from the shared cache
    claims_won: int  # keys this replica computed for everyone
    claims_lost: int  # keys another replica was computing (their event answered them)
    # background keys left to the replica whose WebSocket client watches them
    left_to_watchers: int
    predictions_received: int  # from other replicas' bar-close events
    redis_errors: int
    rate_limit_in_memory: bool  # rate limits counted per replica while Redis is away


class BarrierBatchSummary(msgspec.Struct):
    """Custom-barrier questions and the batches they were evaluated in (signals/barrier_batch)."""

    questions: int
    batches: int


class TritonInputsSummary(msgspec.Struct):
    """How request inputs reach Triton (inference/input_regions.py, TRITON_SHARED_MEMORY)."""

    shared_memory: bool  # the setting, resolved for this Triton's host
    requests_through_shared_memory: int
    regions: int  # /dev/shm regions made so far (one per request in flight at most)
    last_refusal: str | None  # why the message was used instead, the last time it had to be


class StatsResponse(msgspec.Struct):
    uptime_s: float
    requests: int
    responses_by_status: dict[str, int]
    latency: LatencySummary
    cache_hits: int
    cache_coalesced: int
    cache_misses: int
    cache_hit_rate: float
    # of cache_hits, those answered while Triton was unreachable (the newest prediction kept)
    cache_hits_while_models_down: int
    models: list[ModelStats]
    stream: StreamSummary
    bar_close: BarCloseSummary
    shared: SharedSummary
    barrier_batches: BarrierBatchSummary
    triton_inputs: TritonInputsSummary
    triton_error: str | None = None
    # Served vs realised once horizons elapsed, per model version (quality/tracker.py).
    quality: list[VersionQuality] = msgspec.field(default_factory=list)


class ModelStatsReader:
    """Triton's per-model counters for /api/stats, read at most once every `max_age_s` and by
    one request at a time. A dashboard polling stats ten times a second (bench-scale does, to
    time its sweeps) spent ~2.5 % of the event loop's time at 10,000 symbols in the protobuf
    reply's conversion to JSON; the reply is read as protobuf now, and shared."""

    def __init__(self, max_age_s: float = MODEL_STATS_MAX_AGE_S) -> None:
        self.max_age_s = max_age_s
        self._lock = asyncio.Lock()
        self._read_at = -math.inf
        self._value: tuple[list[ModelStats], str | None] = ([], None)

    async def read(self, resources: Resources) -> tuple[list[ModelStats], str | None]:
        """The counters and Triton's error (an error is kept as long: no request queue
        behind a Triton that times out)."""
        async with self._lock:
            if time.monotonic() - self._read_at >= self.max_age_s:
                self._value = await _model_stats(resources)
                self._read_at = time.monotonic()
            return self._value

    @property
    def read_at(self) -> float:
        """Monotonic time of the last read from Triton."""
        return self._read_at


async def _model_stats(resources: Resources) -> tuple[list[ModelStats], str | None]:
    client = resources.triton
    timeout_s = resources.settings.triton.request_timeout_s
    try:
        response = await client.get_inference_statistics(client_timeout=timeout_s)
    except InferenceServerException as exc:
        return [], str(exc.message() or exc)
    by_model: dict[str, ModelStats] = {}
    for entry in response.model_stats:
        current = by_model.get(entry.name)
        if current is None:
            current = by_model[entry.name] = ModelStats(entry.name, [], 0, 0, None, None)
        current.versions.append(entry.version)
        current.inferences += entry.inference_count
        current.executions += entry.execution_count
        success = entry.inference_stats.success
        if success.count:
            current.avg_infer_ms = success.ns / success.count / 1e6
    for stats in by_model.values():
        stats.avg_batch_size = stats.inferences / stats.executions if stats.executions else None
    return sorted(by_model.values(), key=lambda s: s.name), None


def _triton_inputs(resources: Resources) -> TritonInputsSummary:
    regions = resources.input_regions
    if regions is None:
        return TritonInputsSummary(False, 0, 0, None)
    return TritonInputsSummary(True, regions.requests, len(regions.names), regions.last_refusal)


class StatsController(Controller):
    tags = ["health"]  # noqa: RUF012

    @get(
        "/api/stats",
        summary="Requests, latency percentiles, cache, per-model Triton statistics",
        responses=error_responses(401, 429),
    )
    async def stats(self, state: State, resources: NamedDependency[Resources]) -> StatsResponse:
        log: RequestLog = state.request_log
        cache = resources.predictions
        engine = cache.engine.stats
        shared = resources.shared
        freshness_queries, freshness_keys = cache.freshness_reads
        window = np.asarray(log.latencies_ms, dtype=np.float64)
        percentiles = [
            float(np.percentile(window, q)) if window.size else None for q in (50, 95, 99)
        ]
        models, error = await state.model_stats.read(resources)
        return StatsResponse(
            uptime_s=time.time() - log.started_at,
            requests=log.total,
            responses_by_status={str(k): v for k, v in sorted(log.by_status.items())},
            latency=LatencySummary(
                p50_ms=percentiles[0],
                p95_ms=percentiles[1],
                p99_ms=percentiles[2],
                window=int(window.size),
            ),
            cache_hits=cache.hits,
            cache_coalesced=cache.joined,
            cache_misses=cache.misses,
            cache_hit_rate=cache.hit_rate,
            cache_hits_while_models_down=cache.hits_while_models_down,
            models=models,
            stream=state.stream.snapshot(),
            bar_close=BarCloseSummary(
                sweeps=engine.sweeps,
                predictions=engine.predictions,
                triton_requests=engine.triton_requests,
                feature_steps=engine.bars_stepped,
                feature_seeds=engine.seeds,
                phase_ms={name: round(ms, 1) for name, ms in engine.phase_ms.items()},
                states_resumed=engine.states_resumed,
                states_resumed_from_peers=engine.states_resumed_from_peers,
                snapshot_refused=engine.snapshot_refused,
                snapshots_saved=engine.snapshots_saved,
                last_snapshot_ms=engine.last_snapshot_ms,
                corrections=engine.corrections,
                errors=engine.errors,
                not_enough_history=engine.not_enough_history,
                triton_failures=engine.triton_failures,
                database_failures=engine.database_failures,
                polls=engine.polls,
                sweeping=not cache.engine.idle,
                last_sweep_keys=engine.last_sweep_keys,
                sweeps_overlapped=engine.sweeps_overlapped,
                last_sweep_at=engine.last_sweep_at,
                last_sweep_ms=engine.last_sweep_ms,
                freshness_queries=freshness_queries,
                freshness_keys=freshness_keys,
                heap=HeapSummary(**dataclasses.asdict(cache.engine.heap.stats)),
            ),
            shared=SharedSummary(
                replica_id=shared.replica_id,
                redis_available=shared.available,
                cached_predictions_used=shared.cache_hits,
                claims_won=shared.claims_won,
                claims_lost=shared.claims_lost,
                left_to_watchers=shared.left_to_watchers,
                predictions_received=shared.received,
                redis_errors=shared.redis_errors,
                rate_limit_in_memory=state.rate_limit_store.using_fallback,
            ),
            barrier_batches=BarrierBatchSummary(cache.barriers.questions, cache.barriers.batches),
            triton_inputs=_triton_inputs(resources),
            triton_error=error,
            quality=resources.quality.report(),
        )


class MetricsController(PrometheusController):
    """The plugin's /metrics, declared as what it is: Prometheus text, not JSON."""

    @get(
        media_type=MediaType.TEXT,
        summary="Prometheus metrics (text exposition format)",
        tags=["health"],
    )
    async def get(self, resources: NamedDependency[Resources]) -> Response[str]:
        try:  # the lifecycle gauges, read from the registry now; the rest serve without them
            async with asyncio.timeout(LIFECYCLE_GAUGES_TIMEOUT_S):
                registry_db = await resources.registry()
                await refresh_gauges(registry_db, RunStore(registry_db.db))
        except (TimeoutError, EngineError, MySQLError, OSError) as exc:
            log.info("lifecycle gauges not refreshed: %s", exc)
        registry = REGISTRY
        if "prometheus_multiproc_dir" in os.environ or "PROMETHEUS_MULTIPROC_DIR" in os.environ:
            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return Response(generate_latest(registry).decode(), media_type=CONTENT_TYPE_LATEST)
