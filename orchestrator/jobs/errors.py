"""Failures of the job system that callers map to HTTP statuses (api/errors.py) and exit codes."""

from __future__ import annotations


class JobQueueUnavailableError(RuntimeError):
    """Redis, which carries jobs to the workers, does not answer (the API answers 503)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        super().__init__(
            f"the job queue (Redis at {url}) is unavailable: {reason.rstrip('.')}; start it "
            "with `make redis` or point REDIS_URL at a running Redis (jobs already submitted "
            "can still be read)"
        )


class RunNotFoundError(LookupError):
    """No run with that id (the API answers 404)."""

    def __init__(self, run_id: str) -> None:
        self.run_id = run_id
        super().__init__(f"no backtest job {run_id!r}")


class RunFinishedError(RuntimeError):
    """The run already finished, so it cannot be cancelled (the API answers 409)."""

    def __init__(self, run_id: str, status: str) -> None:
        self.run_id, self.status = run_id, status
        super().__init__(
            f"backtest job {run_id!r} already finished with status {status!r}; only queued or "
            "running jobs can be cancelled"
        )
