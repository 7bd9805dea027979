"""The SAQ queue on Redis that carries runs to workers. Jobs are named by task ("backtest",
"walk_forward") and keyed by the run id, so the API enqueues without importing the code that
runs them, and a run is in the queue at most once."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from redis import asyncio as aioredis
from redis.exceptions import RedisError
from saq.job import Job, Status
from saq.queue.redis import RedisQueue

from orchestrator.jobs.errors import JobQueueUnavailableError
from orchestrator.jobs.runs import RunKind
from orchestrator.jobs.settings import JobSettings
from orchestrator.settings import RedisSettings

log = logging.getLogger("orchestrator.jobs")

# A finished job stays readable in Redis this long; the durable record is the MySQL row.
JOB_TTL_S = 3600
# The error of a job whose worker stopped heartbeating (kept in SAQ's record of it).
WORKER_DIED = "the worker running this job stopped answering (killed, crashed or hung)"
# SAQ job statuses in which some worker still owns the job or will pick it up.
IN_FLIGHT = frozenset({Status.NEW, Status.QUEUED, Status.ACTIVE, Status.ABORTING})


def queue_name(redis: RedisSettings) -> str:
    """SAQ names its keys `saq:<name>:...`, so the service's prefix goes into the name."""
    return f"{redis.key_prefix}-backtests"


class _Queue(RedisQueue):
    """SAQ's Redis queue, with two changes. A dequeue that fails while Redis is away waits a
    second instead of retrying in a tight loop (SAQ's worker calls it again at once). SAQ's
    sweep is off: it judges a job by its Redis status alone and races with a worker that has
    just dequeued one (seen at worker start-up: it found the job in the active list still marked
    "queued", aborted it and left it in no list, so nothing ever ran or retried it). Workers
    sweep on the MySQL heartbeat instead (BacktestWorker.reconcile) and move jobs with SAQ's own
    retry and finish."""

    async def sweep(self, lock: int = 60, abort: float = 5.0) -> list[str]:
        return []

    async def dequeue(
        self,
        timeout: float = 0.0,  # noqa: ASYNC109 (SAQ's signature)
        poll_interval: float = 0.0,
    ) -> Job | None:
        try:
            return await super().dequeue(timeout, poll_interval)
        except (RedisError, OSError) as exc:
            log.warning("job queue unavailable (%s); retrying in 1 s", exc)
            await asyncio.sleep(1.0)
            return None


class JobQueue:
    """The queue as the API and the workers use it: enqueue, abort, look up."""

    def __init__(self, redis: RedisSettings, jobs: JobSettings, *, blocking: bool = False) -> None:
        self.url = redis.url
        self.settings = jobs
        # Workers block in BLMOVE for up to dequeue_timeout; the API's calls are quick.
        client: aioredis.Redis = aioredis.from_url(
            redis.url,
            socket_connect_timeout=max(redis.timeout_s, 1.0),
            socket_timeout=None if blocking else max(redis.timeout_s, 2.0),
            health_check_interval=30,
        )
        self.saq = _Queue(client, name=queue_name(redis), swept_error_message=WORKER_DIED)

    async def enqueue(self, kind: RunKind, run_id: str) -> None:
        """Queues the run's job (a no-op when it is already queued)."""
        try:
            await self.saq.enqueue(
                kind,
                key=run_id,
                run_id=run_id,
                timeout=self.settings.timeout_s,
                heartbeat=self.settings.heartbeat_s,
                retries=self.settings.max_attempts,
                ttl=JOB_TTL_S,
            )
        except (RedisError, OSError) as exc:
            raise JobQueueUnavailableError(self.url, str(exc) or type(exc).__name__) from exc

    async def job(self, run_id: str) -> Job | None:
        try:
            return await self.saq.job(run_id)
        except (RedisError, OSError) as exc:
            raise JobQueueUnavailableError(self.url, str(exc) or type(exc).__name__) from exc

    async def abort(self, run_id: str, reason: str) -> bool:
        """Takes a queued job off the queue, or has its worker cancel a running one (SAQ's abort:
        the worker checks every second). False when Redis no longer holds the job."""
        job = await self.job(run_id)
        if job is None or job.status not in IN_FLIGHT:
            return False
        try:
            await self.saq.abort(job, reason)
        except (RedisError, OSError) as exc:
            raise JobQueueUnavailableError(self.url, str(exc) or type(exc).__name__) from exc
        return True

    async def retry(self, job: Job, error: str) -> None:
        """Queues a job again whatever Redis says of it (active, aborting)."""
        try:
            await self.saq.retry(job, error)
        except (RedisError, OSError) as exc:
            raise JobQueueUnavailableError(self.url, str(exc) or type(exc).__name__) from exc

    async def finish_aborted(self, job: Job, error: str) -> None:
        """Ends a job no worker will finish (its run was ended in MySQL)."""
        try:
            await self.saq.finish(job, Status.ABORTED, error=error)
        except (RedisError, OSError) as exc:
            raise JobQueueUnavailableError(self.url, str(exc) or type(exc).__name__) from exc

    async def info(self) -> dict[str, Any]:
        """Queue lengths and live workers (SAQ's own summary)."""
        return dict(await self.saq.info())

    async def close(self) -> None:
        try:
            await self.saq.disconnect()
        except (RedisError, OSError) as exc:  # Redis already gone: nothing left to close
            log.debug("job queue close: %s", exc)
