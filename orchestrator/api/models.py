"""GET /api/models: every model set's versions, champion and challenger, card beside live."""

from __future__ import annotations

from litestar import Controller, get
from litestar.di import NamedDependency

from orchestrator.api.errors import error_responses
from orchestrator.api.resources import Resources
from orchestrator.lifecycle.views import ModelsResponse, model_sets


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
