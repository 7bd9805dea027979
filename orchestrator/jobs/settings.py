"""How jobs are queued, watched and retried; read from the environment (README lists them).

Both sides read the same variables: the API stamps heartbeat, timeout and attempts on every job
it enqueues, the worker uses the timers and its concurrency."""

from __future__ import annotations

import msgspec

from orchestrator.settings import env_float, env_int


class JobSettings(msgspec.Struct, frozen=True):
    # A running job whose worker has not touched it for this long counts as dead: some worker's
    # sweep aborts it and SAQ starts it again (until max_attempts).
    heartbeat_s: int = 30
    # Workers that may start one run: the first attempt plus retries after a worker died.
    max_attempts: int = 3
    # Hard limit of one attempt (walk-forward over months of bars takes minutes, not hours).
    timeout_s: int = 6 * 3600
    # How often a worker looks for dead jobs (SAQ's sweep) and repairs runs Redis lost.
    sweep_s: int = 5
    # Progress and heartbeats reach MySQL at most this often.
    progress_interval_s: float = 0.5
    # Jobs one worker process runs at once (a backtest saturates the CPU).
    concurrency: int = 1

    @classmethod
    def from_env(cls) -> JobSettings:
        d = cls()
        return cls(
            heartbeat_s=env_int("JOB_HEARTBEAT_S", d.heartbeat_s, positive=True),
            max_attempts=env_int("JOB_MAX_ATTEMPTS", d.max_attempts, positive=True),
            timeout_s=env_int("JOB_TIMEOUT_S", d.timeout_s, positive=True),
            sweep_s=env_int("JOB_SWEEP_S", d.sweep_s, positive=True),
            progress_interval_s=env_float(
                "JOB_PROGRESS_INTERVAL_S", d.progress_interval_s, positive=True
            ),
            concurrency=env_int("WORKER_CONCURRENCY", d.concurrency, positive=True),
        )
