"""GET /api/models (every model set's versions, champion and challenger, card beside live) and
the admin moves: POST /api/models/{set}/promote and /rollback (docs/lifecycle.md)."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from litestar import Controller, Request, get, post
from litestar.di import NamedDependency

from orchestrator.api.errors import error_responses
from orchestrator.api.resources import Resources
from orchestrator.api.security import require_admin
from orchestrator.lifecycle.views import ModelSetView, ModelsResponse, model_set, model_sets

Reason = Annotated[str, msgspec.Meta(min_length=3, max_length=500)]
ADMIN_ERRORS = error_responses(400, 401, 403, 404, 409, 429, 503)


class RollbackRequest(msgspec.Struct, forbid_unknown_fields=True):
    reason: Reason  # recorded in the registry beside who asked


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
        return await model_sets(registry, resources.quality.report())

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
        name: str,
        data: RollbackRequest,
    ) -> ModelSetView:
        require_admin(resources.settings.api, request)
        lifecycle = await resources.lifecycle()
        await lifecycle.rollback(name, _actor(request), data.reason)
        return await model_set(lifecycle.registry, resources.quality.report(), name)

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
        name: str,
        data: PromoteRequest,
    ) -> ModelSetView:
        require_admin(resources.settings.api, request)
        lifecycle = await resources.lifecycle()
        await lifecycle.promote(name, data.version, _actor(request), data.reason)
        return await model_set(lifecycle.registry, resources.quality.report(), name)
