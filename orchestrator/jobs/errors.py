"""Failures of the job system; their status and exit code come with their class
(orchestrator/errors.py)."""

from __future__ import annotations

from orchestrator.errors import ConflictError, NotFoundError, ServiceUnavailableError


class JobQueueUnavailableError(ServiceUnavailableError):
    """Redis, which carries jobs to the workers, does not answer (the API answers 503)."""

    title = "Job queue unavailable"

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(
            f"the job queue (Redis at {url}) is unavailable: {reason.rstrip('.')}; start it "
            "with `make redis` or point REDIS_URL at a running Redis (jobs already submitted "
            "can still be read)"
        )


class RunNotFoundError(NotFoundError):
    """No run with that id (the API answers 404)."""

    field = "job_id"

    def __init__(self, run_id: str, kind: str = "backtest") -> None:
        self.run_id = run_id
        super().__init__(f"no {kind} job {run_id!r}")


class RunFinishedError(ConflictError):
    """The run already finished, so it cannot be cancelled (the API answers 409)."""

    field = "job_id"

    def __init__(self, run_id: str, run_status: str) -> None:
        self.run_id, self.run_status = run_id, run_status
        super().__init__(
            f"backtest job {run_id!r} already finished with status {run_status!r}; only queued or "
            "running jobs can be cancelled"
        )
