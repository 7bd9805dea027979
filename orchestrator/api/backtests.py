"""POST /api/backtest and GET /api/backtest/{id}: short ranges answer inline, long ones (and
walk-forward runs, which train models) become jobs whose progress can be polled.

Jobs run one at a time in this process (a backtest saturates the CPU and Triton); they live in
memory, the last `MAX_KEPT_JOBS` of them, and do not survive a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import msgspec
from litestar import Controller, Response, get, post
from litestar.datastructures import State
from litestar.params import FromPath, JSONBody

from orchestrator.api.errors import ErrorBody, NotFoundError, describe, error_responses
from orchestrator.backtest.report import BacktestResult
from orchestrator.backtest.request import BacktestRequest, BacktestRequestError, parse_moment
from orchestrator.backtest.runner import run_backtest
from orchestrator.backtest.walkforward import WalkForwardConfig, run_walk_forward
from orchestrator.marketdata.timeframes import InvalidTimeframeError, parse_timeframe
from orchestrator.signals.strategies import DEFAULT_STRATEGY

INLINE_MAX_BARS = 30_000  # ~100 days of 5m bars answer in the request (a few seconds)
MAX_KEPT_JOBS = 50
JobStatus = Literal["queued", "running", "done", "failed"]


class BacktestParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Overrides; anything left out keeps the strategy's / models' own value."""

    min_confidence: float | None = None
    min_range_tp_ratio: float | None = None
    use_metamodel: bool | None = None
    horizon: str | None = None  # time stop; default: the models' label horizon
    fee_rate: float = 0.0  # per side, fraction of notional (0.0002 = 2 bps)
    slippage: float = 0.0  # per fill, fraction of price
    allow_overlap: bool = False  # several open trades per symbol
    walk_forward: int | None = None  # K windows, models retrained before each (always a job)
    run_as_job: bool = False  # force a job even for a short range


class BacktestBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    symbol: str
    start_date: str  # YYYY-MM-DD (from 00:00 UTC) or an ISO datetime
    end_date: str  # YYYY-MM-DD (that whole day included) or an ISO datetime (exclusive)
    strategy: str = DEFAULT_STRATEGY
    timeframe: str = "5m"
    params: BacktestParams | None = None


class BacktestJob(msgspec.Struct):
    id: str
    status: JobStatus
    phase: str  # queued, loading, features, inference, training, simulation, done
    progress: float  # 0..1 within the phase
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    status_url: str = ""
    result: BacktestResult | None = None
    error: ErrorBody | None = None
    error_status: int | None = None


def to_request(body: BacktestBody) -> BacktestRequest:
    params = body.params or BacktestParams()
    start = parse_moment("start_date", body.start_date, end=False)
    end = parse_moment("end_date", body.end_date, end=True)
    if end <= start:
        raise BacktestRequestError("end_date", "end_date must be after start_date")
    if params.walk_forward is not None and not 2 <= params.walk_forward <= 24:
        raise BacktestRequestError("params.walk_forward", "walk_forward must be 2..24 windows")
    return BacktestRequest(
        symbol=body.symbol,
        start=start,
        end=end,
        timeframe=body.timeframe,
        strategy=body.strategy,
        min_confidence=params.min_confidence,
        min_range_tp_ratio=params.min_range_tp_ratio,
        use_metamodel=params.use_metamodel,
        horizon=params.horizon,
        fee_rate=params.fee_rate,
        slippage=params.slippage,
        allow_overlap=params.allow_overlap,
    )


def _expected_bars(request: BacktestRequest) -> int:
    try:
        seconds = parse_timeframe(request.timeframe).seconds
    except InvalidTimeframeError as exc:
        raise BacktestRequestError("timeframe", str(exc)) from None
    return int((request.end - request.start).total_seconds() // seconds)


@dataclass
class BacktestJobs:
    jobs: dict[str, BacktestJob] = field(default_factory=dict)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    one_at_a_time: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(1))

    def submit(self, run: Any) -> BacktestJob:
        """`run(progress)` is awaited when the job's turn comes."""
        job_id = uuid.uuid4().hex[:16]
        job = BacktestJob(
            job_id, "queued", "queued", 0.0, datetime.now(UTC), status_url=f"/api/backtest/{job_id}"
        )
        self.jobs[job_id] = job
        while len(self.jobs) > MAX_KEPT_JOBS:
            oldest = next(j for j in self.jobs.values() if j.status in ("done", "failed"))
            del self.jobs[oldest.id]
        task = asyncio.create_task(self._run(job, run), name=f"backtest:{job_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return job

    async def _run(self, job: BacktestJob, run: Any) -> None:
        def progress(phase: str, fraction: float) -> None:
            job.phase, job.progress = phase, max(0.0, min(1.0, fraction))

        async with self.one_at_a_time:
            job.status, job.started_at = "running", datetime.now(UTC)
            try:
                job.result = await run(progress)
                job.status, job.phase, job.progress = "done", "done", 1.0
            except asyncio.CancelledError:
                job.status, job.error = "failed", ErrorBody("Cancelled", "the service stopped")
                raise
            except Exception as exc:
                status, body = describe(exc)
                if status == 500 and isinstance(exc, ValueError):  # e.g. too little data to train
                    status, body = 422, ErrorBody("Cannot backtest", str(exc))
                job.error_status, job.error, job.status = status, body, "failed"
            finally:
                job.finished_at = datetime.now(UTC)

    async def close(self) -> None:
        for task in tuple(self.tasks):
            task.cancel()
        for task in tuple(self.tasks):
            with contextlib.suppress(asyncio.CancelledError):
                await task


class BacktestController(Controller):
    path = "/api/backtest"
    tags = ["backtests"]  # noqa: RUF012

    @post(
        "/",
        summary="Backtest a strategy over the served models (inline, or a job for long ranges)",
        responses=error_responses(400, 401, 404, 422, 429, 503),
        status_code=200,
    )
    async def create(self, state: State, data: JSONBody[BacktestBody]) -> Response[BacktestJob]:
        request = to_request(data)
        params = data.params or BacktestParams()
        resources = state.resources
        jobs: BacktestJobs = state.backtests
        if params.walk_forward is not None:
            windows = params.walk_forward

            async def walk_forward(progress: Any) -> BacktestResult:
                db = await resources.database()
                config = WalkForwardConfig(windows=windows)
                return await run_walk_forward(request, db=db, config=config, progress=progress)

            return Response(jobs.submit(walk_forward), status_code=202)

        async def plain(progress: Any) -> BacktestResult:
            db = await resources.database()
            models, _ = await resources.predictions.served_models(
                parse_timeframe(request.timeframe).value
            )
            return await run_backtest(request, db=db, models=models, progress=progress)

        if params.run_as_job or _expected_bars(request) > INLINE_MAX_BARS:
            return Response(jobs.submit(plain), status_code=202)
        started = datetime.now(UTC)
        result = await plain(None)
        job = BacktestJob(
            "inline", "done", "done", 1.0, started, started, datetime.now(UTC), result=result
        )
        return Response(job, status_code=200)

    @get(
        "/{job_id:str}",
        summary="A backtest job: status, phase, progress, and the result when done",
        responses=error_responses(401, 404, 429),
    )
    async def status(self, state: State, job_id: FromPath[str]) -> BacktestJob:
        jobs: BacktestJobs = state.backtests
        job = jobs.jobs.get(job_id)
        if job is None:
            raise NotFoundError(
                "job_id",
                f"no backtest job {job_id!r} (jobs live in memory only)",
            )
        return job
