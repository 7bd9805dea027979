"""Backtest jobs as the API sees them: submit (a MySQL row, then a SAQ job), read and list (MySQL
only, so any replica answers, with or without Redis), cancel (MySQL first, then SAQ's abort)."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from orchestrator.jobs.errors import JobQueueUnavailableError, RunNotFoundError
from orchestrator.jobs.queue import JobQueue
from orchestrator.jobs.runs import (
    BACKTEST_KINDS,
    Run,
    RunKind,
    RunParameters,
    RunStatus,
    RunStore,
)
from orchestrator.jobs.settings import JobSettings
from orchestrator.lifecycle.retraining import RetrainRequest
from orchestrator.marketdata.db import Database
from orchestrator.settings import RedisSettings

log = logging.getLogger("orchestrator.jobs")


class BacktestJobService:
    def __init__(
        self,
        database: Callable[[], Awaitable[Database]],
        redis: RedisSettings,
        settings: JobSettings,
    ) -> None:
        self._database = database
        self.settings = settings
        self.queue = JobQueue(redis, settings)

    async def _runs(self) -> RunStore:
        return RunStore(await self._database())

    async def submit(self, kind: RunKind, parameters: RunParameters) -> Run:
        """Records the run, then queues it; when Redis refuses, the record goes too (503)."""
        runs = await self._runs()
        run = await runs.create(kind, parameters, self.settings.max_attempts)
        try:
            await self.queue.enqueue(kind, run.id)
        except JobQueueUnavailableError:
            await runs.discard(run.id)
            raise
        return run

    async def submit_retrain(self, request: RetrainRequest) -> Run | None:
        """Records and queues a retrain of the set, unless one is queued or running (None)."""
        runs = await self._runs()
        run = await runs.create_retrain(request, self.settings.max_attempts)
        if run is None:
            return None
        try:
            await self.queue.enqueue("retrain", run.id)
        except JobQueueUnavailableError:
            await runs.discard(run.id)
            raise
        return run

    async def get(self, run_id: str, kinds: tuple[RunKind, ...] = BACKTEST_KINDS) -> Run:
        run = await (await self._runs()).get(run_id)
        if run is None or run.kind not in kinds:
            raise RunNotFoundError(run_id, "retrain" if kinds == ("retrain",) else "backtest")
        return run

    async def page(
        self, status: RunStatus | None, limit: int, offset: int
    ) -> tuple[list[Run], int]:
        return await (await self._runs()).page(status, limit, offset)

    async def cancel(self, run_id: str) -> Run:
        """Queued: cancelled now. Running: flagged, and SAQ's abort reaches the worker within a
        second; without Redis the worker still sees the flag at its next progress write."""
        await self.get(run_id)  # a backtest's id, not a retrain's
        run = await (await self._runs()).request_cancel(run_id)
        try:
            await self.queue.abort(run_id, f"cancelled by DELETE /api/backtest/{run_id}")
        except JobQueueUnavailableError as exc:
            log.warning("cancel of %s recorded; SAQ abort skipped: %s", run_id, exc)
        return run

    async def close(self) -> None:
        await self.queue.close()
