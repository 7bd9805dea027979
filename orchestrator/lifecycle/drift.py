"""Drift warnings of live quality become retrains of the drifting set.

Live quality warns when the recent interval coverage of a served version leaves its band
(quality/totals.py). Each new warning queues a retrain of the set serving that timeframe, unless
the set is retraining already or a drift retrain of it was queued within
RETRAIN_DRIFT_COOLDOWN_H (a market that drifted stays drifted until a new version is judged;
one retrain per cooldown is enough). Every replica sees the same warnings: the runs table's
one-retrain-per-set rule and the cooldown make them queue one retrain between them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

from orchestrator.inference.models import ENSEMBLE, served_name
from orchestrator.jobs.runs import Run, RunStore
from orchestrator.jobs.service import BacktestJobService
from orchestrator.lifecycle.retraining import RetrainRequest, RetrainSettings
from orchestrator.marketdata.db import Database
from orchestrator.quality.totals import Drift

log = logging.getLogger("orchestrator.lifecycle")


class DriftRetrainer:
    def __init__(
        self,
        jobs: BacktestJobService,
        database: Callable[[], Awaitable[Database]],
        settings: RetrainSettings,
    ) -> None:
        self.jobs, self.database, self.settings = jobs, database, settings

    async def __call__(self, drifts: list[Drift]) -> list[Run]:
        """Queues one retrain per drifting set; returns the runs it queued."""
        if self.settings.drift_cooldown_h <= 0:
            return []  # RETRAIN_DRIFT_COOLDOWN_H=0: drift is logged, not acted on
        runs = RunStore(await self.database())
        cooldown = timedelta(hours=self.settings.drift_cooldown_h)
        by_set: dict[str, list[str]] = {}
        for drift in drifts:
            by_set.setdefault(served_name(ENSEMBLE, drift.timeframe), []).append(drift.warning)
        queued = []
        for model_set, warnings in by_set.items():
            recent = [
                run
                for run in await runs.retrains(model_set, limit=20)
                if run.parameters.retrain is not None
                and run.parameters.retrain.trigger == "drift"
                and run.created_at > datetime.now(UTC) - cooldown
            ]
            if recent:
                continue
            request = RetrainRequest(
                model_set=model_set,
                trigger="drift",
                reason=f"live quality drift: {'; '.join(warnings)}"[:500],
                actor="live quality",
            )
            run = await self.jobs.submit_retrain(request)
            if run is not None:
                log.warning("model drift: queued retrain %s of %s", run.id, model_set)
                queued.append(run)
        return queued
