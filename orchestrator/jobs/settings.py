"""How jobs are queued, watched and retried; read from the environment (README lists them).

Both sides read the same variables: the API stamps heartbeat, timeout and attempts on every job
it enqueues, the worker uses the timers and its concurrency."""

from __future__ import annotations

import os

import msgspec


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SystemExit(f"error: environment variable {name}={raw!r} must be a number") from None
    if value <= 0:
        raise SystemExit(f"error: environment variable {name}={raw!r} must be positive")
    return value


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
            heartbeat_s=int(_env_number("JOB_HEARTBEAT_S", d.heartbeat_s)),
            max_attempts=int(_env_number("JOB_MAX_ATTEMPTS", d.max_attempts)),
            timeout_s=int(_env_number("JOB_TIMEOUT_S", d.timeout_s)),
            sweep_s=int(_env_number("JOB_SWEEP_S", d.sweep_s)),
            progress_interval_s=_env_number("JOB_PROGRESS_INTERVAL_S", d.progress_interval_s),
            concurrency=int(_env_number("WORKER_CONCURRENCY", d.concurrency)),
        )
