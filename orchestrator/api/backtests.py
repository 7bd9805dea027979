"""/api/backtest: short ranges answer inline; long ones, `run_as_job` and walk-forward runs (which
train models) become jobs: a row in MySQL, a SAQ job on Redis, run by `python -m orchestrator
worker`. Reading and listing jobs use MySQL only, so every replica answers for every job, also
after a restart or with Redis flushed. This module never imports the walk-forward (training)
code: jobs are enqueued by task name.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Literal, get_args

import msgspec
from litestar import Controller, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.params import FromQuery, JSONBody, PathParameter, QueryParameter

from orchestrator.api.errors import error_responses
from orchestrator.api.market import SYMBOL_PATTERN, SYMBOL_RULE
from orchestrator.api.resources import Resources
from orchestrator.backtest.engine import MAX_RATE
from orchestrator.backtest.report import BacktestResult
from orchestrator.backtest.request import BacktestRequest, BacktestRequestError, resolve_request
from orchestrator.backtest.runner import run_backtest
from orchestrator.dates import MOMENT_MAX_LENGTH, MOMENT_PATTERN, describe_moment, parse_moment
from orchestrator.errors import ErrorBody
from orchestrator.features.horizons import Horizon
from orchestrator.inference.service import PredictionService
from orchestrator.jobs.runs import Run, RunParameters, RunStatus
from orchestrator.jobs.service import BacktestJobService
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import Timeframe, parse_timeframe
from orchestrator.signals.barriers import MAX_BARRIER_ATR, MIN_BARRIER_ATR
from orchestrator.signals.strategies import DEFAULT_STRATEGY, STRATEGIES

INLINE_MAX_BARS = 30_000  # ~100 days of 5m bars answer in the request (a few seconds)
JobStatus = RunStatus  # queued, running, done, failed, cancelled
JobKind = Literal["backtest", "walk_forward"]
StrategyName = Literal["aggressive_filter", "balanced", "conservative", "baseline"]
TimeframeName = Literal["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w", "1mo"]
HorizonName = Literal["scalping", "intraday", "swing", "position"]
# The OpenAPI enums above are spelled out for the generated clients; they must name what exists.
assert set(get_args(StrategyName)) == set(STRATEGIES)
assert set(get_args(TimeframeName)) == {t.value for t in Timeframe}
assert set(get_args(HorizonName)) == {h.value for h in Horizon}

JOB_ID = r"^[0-9a-f]{16}$"


def _moment(*, end: bool) -> msgspec.Meta:
    """A date as people type it: exactly what parse_moment accepts (so every value valid by the
    document parses); a refused one is answered with the description (api/validation.py)."""
    return msgspec.Meta(
        pattern=MOMENT_PATTERN, max_length=MOMENT_MAX_LENGTH, description=describe_moment(end=end)
    )


Symbol = Annotated[str, msgspec.Meta(pattern=SYMBOL_PATTERN, description=SYMBOL_RULE)]
Rate = Annotated[float, msgspec.Meta(ge=0.0, lt=MAX_RATE)]
BarrierATR = Annotated[float, msgspec.Meta(ge=MIN_BARRIER_ATR, le=MAX_BARRIER_ATR)]


# Litestar drops a bound of 0 from the schema of an optional number (it tests the bound for
# truth); stating it again as extra schema keeps it in the document.
_NOT_NEGATIVE = {"extra": {"minimum": 0.0}}


class BacktestParams(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """Overrides; anything left out keeps the strategy's / models' own value."""

    # Expected R net of the simulated costs a signal must reach (docs/models.md).
    min_expected_r: Annotated[float, msgspec.Meta(ge=-1.0, le=10.0)] | None = None
    min_confidence: (
        Annotated[float, msgspec.Meta(ge=0.0, le=1.0, extra_json_schema=_NOT_NEGATIVE)] | None
    ) = None
    min_range_tp_ratio: (
        Annotated[float, msgspec.Meta(ge=0.0, le=1000.0, extra_json_schema=_NOT_NEGATIVE)] | None
    ) = None
    use_metamodel: bool | None = None
    horizon: HorizonName | None = None  # time stop; default: the models' label horizon
    # Your take-profit and stop in ATR multiples: signals are then decided by the barrier
    # model's P(take-profit first) and expected R at these levels (as /api/signals?tp=&sl=).
    tp_atr: BarrierATR | None = None
    sl_atr: BarrierATR | None = None
    fee_rate: Rate = 0.0  # per side, fraction of notional (0.0002 = 2 bps)
    slippage: Rate = 0.0  # per fill, fraction of price
    allow_overlap: bool = False  # several open trades per symbol
    # K windows, models retrained before each (always a job)
    walk_forward: Annotated[int, msgspec.Meta(ge=2, le=24)] | None = None
    run_as_job: bool = False  # force a job even for a short range


class BacktestBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    symbol: Symbol
    start_date: Annotated[str, _moment(end=False)]  # the first bar
    end_date: Annotated[str, _moment(end=True)]  # exclusive
    strategy: StrategyName = DEFAULT_STRATEGY  # type: ignore[assignment]
    timeframe: TimeframeName = "5m"
    params: BacktestParams | None = None


class BacktestJob(msgspec.Struct):
    id: str
    status: JobStatus
    phase: str  # queued, starting, loading, features, inference, training, simulation, done
    progress: Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]  # within the phase
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    status_url: str = ""
    result: BacktestResult | None = None
    error: ErrorBody | None = None
    error_status: int | None = None
    kind: JobKind = "backtest"
    attempts: int = 0  # workers that started it (more than 1: a worker died and it was retried)
    max_attempts: int = 0
    cancel_requested: bool = False  # DELETE was asked while it ran; it ends "cancelled"
    updated_at: datetime | None = None
    request: BacktestRequest | None = None  # what runs (validated, UTC times)
    walk_forward: int | None = None  # windows of a walk-forward run


class BacktestJobPage(msgspec.Struct):
    """Jobs newest first, without their results (GET /api/backtest/{id} has them)."""

    items: list[BacktestJob]
    total: int  # jobs matching the filter
    limit: int
    offset: int
    next_offset: int | None = None  # the offset of the next page, None on the last one


def to_request(body: BacktestBody) -> BacktestRequest:
    params = body.params or BacktestParams()
    start = parse_moment("start_date", body.start_date, end=False)
    end = parse_moment("end_date", body.end_date, end=True)
    if end <= start:
        raise BacktestRequestError("end_date", "end_date must be after start_date")
    return BacktestRequest(
        symbol=body.symbol,
        start=start,
        end=end,
        timeframe=body.timeframe,
        strategy=body.strategy,
        min_expected_r=params.min_expected_r,
        min_confidence=params.min_confidence,
        min_range_tp_ratio=params.min_range_tp_ratio,
        use_metamodel=params.use_metamodel,
        horizon=params.horizon,
        tp_atr=params.tp_atr,
        sl_atr=params.sl_atr,
        fee_rate=params.fee_rate,
        slippage=params.slippage,
        allow_overlap=params.allow_overlap,
    )


def _expected_bars(request: BacktestRequest) -> int:
    seconds = parse_timeframe(request.timeframe).seconds
    return int((request.end - request.start).total_seconds() // seconds)


def job_view(run: Run) -> BacktestJob:
    result = (
        msgspec.json.decode(run.result, type=BacktestResult) if run.result is not None else None
    )
    return BacktestJob(
        id=run.id,
        status=run.status,
        phase=run.phase,
        progress=run.progress,
        created_at=run.created_at,
        started_at=run.started_at,
        finished_at=run.finished_at,
        status_url=f"/api/backtest/{run.id}",
        result=result,
        error=run.error,
        error_status=run.error_status,
        kind="walk_forward" if run.kind == "walk_forward" else "backtest",
        attempts=run.attempts,
        max_attempts=run.max_attempts,
        cancel_requested=run.cancel_requested,
        updated_at=run.updated_at,
        request=run.parameters.backtest,
        walk_forward=run.parameters.walk_forward,
    )


JobId = Annotated[str, PathParameter(pattern=JOB_ID, description="a job id (16 hex digits)")]


class BacktestController(Controller):
    path = "/api/backtest"
    tags = ["backtests"]  # noqa: RUF012

    @post(
        "/",
        summary="Backtest a strategy over the served models (inline, or a job for long ranges)",
        description="Ranges up to 30,000 bars answer inline (200). Longer ranges, "
        "`params.run_as_job` and `params.walk_forward` answer 202 with the job and its "
        "`status_url`; 503 when the job queue (Redis) is unavailable.",
        responses={
            202: ResponseSpec(BacktestJob, description="Queued as a job: poll its `status_url`"),
            **error_responses(400, 401, 404, 422, 429, 503),
        },
        status_code=200,
    )
    async def create(
        self,
        resources: NamedDependency[Resources],
        predictions: NamedDependency[PredictionService],
        backtest_jobs: NamedDependency[BacktestJobService],
        data: JSONBody[BacktestBody],
    ) -> Response[BacktestJob]:
        # An unknown symbol is a 404 whatever else the body says (the range cannot matter).
        await BarStore(await resources.database()).get_symbol(data.symbol)
        request = to_request(data)
        params = data.params or BacktestParams()
        resolve_request(request)  # bad strategy or parameters: 400 now, not a failed job later
        if params.walk_forward is not None:
            parameters = RunParameters(request=request, walk_forward=params.walk_forward)
            run = await backtest_jobs.submit("walk_forward", parameters)
            return Response(job_view(run), status_code=202)
        timeframe = parse_timeframe(request.timeframe).value
        models, _ = await predictions.served_models(timeframe)  # 404 when not served
        if params.run_as_job or _expected_bars(request) > INLINE_MAX_BARS:
            run = await backtest_jobs.submit("backtest", RunParameters(request=request))
            return Response(job_view(run), status_code=202)
        started = datetime.now(UTC)
        result = await run_backtest(request, db=await resources.database(), models=models)
        job = BacktestJob(
            "inline", "done", "done", 1.0, started, started, datetime.now(UTC), result=result
        )
        return Response(job, status_code=200)

    @get(
        "/",
        summary="Recent backtest jobs, newest first (paged, optionally by status)",
        responses=error_responses(400, 401, 429, 503),
    )
    async def list_jobs(
        self,
        backtest_jobs: NamedDependency[BacktestJobService],
        status: FromQuery[JobStatus | None] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=100)] = 20,
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000)] = 0,
    ) -> BacktestJobPage:
        runs, total = await backtest_jobs.page(status, limit, offset)
        following = offset + len(runs)
        return BacktestJobPage(
            items=[job_view(run) for run in runs],
            total=total,
            limit=limit,
            offset=offset,
            next_offset=following if following < total and runs else None,
        )

    @get(
        "/{job_id:str}",
        summary="A backtest job: status, phase, progress, and the result when done",
        responses=error_responses(400, 401, 404, 429, 503),
    )
    async def status(
        self, backtest_jobs: NamedDependency[BacktestJobService], job_id: JobId
    ) -> BacktestJob:
        return job_view(await backtest_jobs.get(job_id))

    @delete(
        "/{job_id:str}",
        summary="Cancel a job: a queued one at once (200), a running one at its next step (202)",
        description="A running job keeps status `running` with `cancel_requested: true` until its "
        "worker stops it (within about a second), then reads `cancelled`. A finished job "
        "answers 409.",
        responses={
            202: ResponseSpec(BacktestJob, description="Running: it stops within about a second"),
            **error_responses(400, 401, 404, 409, 429, 503),
        },
        status_code=200,
    )
    async def cancel(
        self, backtest_jobs: NamedDependency[BacktestJobService], job_id: JobId
    ) -> Response[BacktestJob]:
        run = await backtest_jobs.cancel(job_id)
        return Response(job_view(run), status_code=200 if run.finished else 202)
