"""GET /api/models (every model set's versions, champion and challenger, card beside live, the
last retrain) and the admin actions: POST /api/models/{set}/retrain, /promote and /rollback
(docs/lifecycle.md)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter

from orchestrator.api.errors import error_responses
from orchestrator.api.resources import Resources
from orchestrator.api.security import require_admin
from orchestrator.errors import ConflictError
from orchestrator.jobs.runs import Run, RunStore
from orchestrator.jobs.service import BacktestJobService
from orchestrator.lifecycle.retraining import RetrainRequest
from orchestrator.lifecycle.views import (
    ModelSetView,
    ModelsResponse,
    RetrainView,
    model_set,
    model_sets,
    retrain_view,
)

Reason = Annotated[str, msgspec.Meta(min_length=3, max_length=500)]
SetName = Annotated[
    str,
    PathParameter(
        pattern=r"^[a-z][a-z0-9_]{0,63}$",
        description="a model set: the ensemble one timeframe is served by (signal_ensemble, "
        "signal_ensemble_1h, ...; GET /api/models lists them)",
    ),
]
RunId = Annotated[str, PathParameter(pattern=r"^[0-9a-f]{16}$", description="a run id")]
ADMIN_ERRORS = error_responses(400, 401, 403, 404, 409, 429, 503)


class RollbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason  # recorded in the registry beside who asked


# Litestar drops a bound of 0 from the schema of an optional number (it tests the bound for
# truth); stating it again as extra schema keeps it in the document (as api/backtests.py does).
_NOT_NEGATIVE = {"extra": {"minimum": 0}}


class RetrainBody(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason  # recorded with the run and the version it makes
    # Training options; omitted: RETRAIN_EPOCHS, RETRAIN_FOLDS, RETRAIN_WINDOW_DAYS.
    epochs: Annotated[int, msgspec.Meta(ge=1, le=200)] | None = None
    folds: Annotated[int, msgspec.Meta(ge=2, le=20)] | None = None
    window_days: (
        Annotated[int, msgspec.Meta(ge=0, le=36500, extra_json_schema=_NOT_NEGATIVE)] | None
    ) = None


class RetrainInFlightError(ConflictError):
    """A retrain of the set is queued or running already (409): one at a time per set."""

    def __init__(self, model_set: str, run: Run) -> None:
        super().__init__(
            f"{model_set} is already retraining (run {run.id}, {run.status}, {run.phase}); follow "
            f"it at /api/models/retrains/{run.id} or cancel it before asking again"
        )


class PromoteRequest(msgspec.Struct, forbid_unknown_fields=True):
    version: Annotated[int, msgspec.Meta(ge=1)]
    reason: Reason


def _actor(request: Request[Any, Any, Any]) -> str:
    client = request.client.host if request.client else "unknown"
    return f"api admin from {client}"


class ModelsController(Controller):
    path = "/api/models"
    tags = ["models"]  # noqa: RUF012

    @get(
        "",
        summary="Model sets: champion, challenger, every version's card and live quality",
        description="One entry per model set (the ensemble serving a timeframe). Each version "
        "carries its status (candidate, challenger, champion, retired, rejected) and why, the "
        "numbers of its model card, the promotion test's numbers when one ran, and its live "
        "quality (interval coverage, skill, calibration) since it was served.",
        responses=error_responses(401, 429, 503),
    )
    async def list_models(self, resources: NamedDependency[Resources]) -> ModelsResponse:
        registry = await resources.registry()
        runs = RunStore(await resources.database())
        return await model_sets(registry, runs, resources.quality.report())

    @post(
        "/{name:str}/retrain",
        status_code=202,
        summary="Admin: retrain a model set now (a job on the workers)",
        description="Queues a retrain: the workers train a new version on the newest bars, "
        "install it beside the champion and judge it with the promotion test (docs/"
        "lifecycle.md). Answers 202 with the run; poll its `status_url`. 409 when the set is "
        "retraining already, 404 for an unknown set, 503 when the job queue is down.",
        responses=ADMIN_ERRORS,
    )
    async def retrain(
        self,
        request: Request[Any, Any, Any],
        resources: NamedDependency[Resources],
        backtest_jobs: NamedDependency[BacktestJobService],
        name: SetName,
        data: JSONBody[RetrainBody],
    ) -> RetrainView:
        require_admin(resources.settings.api, request)
        registry = await resources.registry()
        await registry.versions_of(name)  # 404 for an unknown set, before anything is queued
        retrain = RetrainRequest(
            model_set=name,
            trigger="manual",
            reason=data.reason,
            actor=_actor(request),
            epochs=data.epochs,
            folds=data.folds,
            window_days=data.window_days,
        )
        run = await backtest_jobs.submit_retrain(retrain)
        if run is None:
            running = await RunStore(await resources.database()).in_flight_retrain(name)
            if running is None:  # it finished between the two reads: ask the caller to retry
                raise ConflictError(f"{name} was retraining a moment ago; ask again")
            raise RetrainInFlightError(name, running)
        return retrain_view(run)

    @get(
        "/retrains/{run_id:str}",
        summary="A retrain run: progress, then the version it made and the promotion verdict",
        responses=error_responses(400, 401, 404, 429, 503),
    )
    async def retrain_status(
        self, backtest_jobs: NamedDependency[BacktestJobService], run_id: RunId
    ) -> RetrainView:
        return retrain_view(await backtest_jobs.get(run_id, kinds=("retrain",)))

    @post(
        "/{name:str}/rollback",
        status_code=200,
        summary="Admin: the previous champion serves again",
        description="Triton loads the previous champion (the current one serves until it is "
        "ready), then the registry records the move with the reason. 409 when there is no "
        "earlier champion or its files are gone from the repository.",
        responses=ADMIN_ERRORS,
    )
    async def rollback(
        self,
        request: Request[Any, Any, Any],
        resources: NamedDependency[Resources],
        name: SetName,
        data: JSONBody[RollbackRequest],
    ) -> ModelSetView:
        require_admin(resources.settings.api, request)
        lifecycle = await resources.lifecycle()
        await lifecycle.rollback(name, _actor(request), data.reason)
        runs = RunStore(await resources.database())
        return await model_set(lifecycle.registry, runs, resources.quality.report(), name)

    @post(
        "/{name:str}/promote",
        status_code=200,
        summary="Admin: a version serves from now on, without the promotion test",
        description="Forces a promotion (the reason is recorded; the test's verdict is not "
        "asked). The current champion is retired. 409 when the version is rejected or cannot "
        "be loaded.",
        responses=ADMIN_ERRORS,
    )
    async def promote(
        self,
        request: Request[Any, Any, Any],
        resources: NamedDependency[Resources],
        name: SetName,
        data: JSONBody[PromoteRequest],
    ) -> ModelSetView:
        require_admin(resources.settings.api, request)
        lifecycle = await resources.lifecycle()
        await lifecycle.promote(name, data.version, _actor(request), data.reason)
        runs = RunStore(await resources.database())
        return await model_set(lifecycle.registry, runs, resources.quality.report(), name)
