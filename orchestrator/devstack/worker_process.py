"""`python -m orchestrator.devstack.worker_process up|down`: one job worker in the background for
`make run` (pid and log under .run/). More workers, on this or other machines, are started with
`python -m orchestrator worker` pointing at the same REDIS_URL and MYSQL_*."""

from __future__ import annotations

import os
import sys

from orchestrator.devstack import process
from orchestrator.settings import RUN_DIR

PID_PATH = RUN_DIR / "worker.pid"
LOG_PATH = RUN_DIR / "worker.log"


READY = "worker ready:"  # the line BacktestWorker.serve logs once it takes jobs


def up(timeout_s: float = 60.0) -> int:
    if process.running_pid(PID_PATH, "worker") is not None:
        print(f"job worker already running (log {LOG_PATH})")
        return 0
    offset = LOG_PATH.stat().st_size if LOG_PATH.exists() else 0
    child = process.spawn(
        [sys.executable, "-u", "-m", "orchestrator", "worker"],
        env=dict(os.environ),
        log_path=LOG_PATH,
        pid_path=PID_PATH,
    )

    # Ready once it logs so; a worker that cannot reach Redis or MySQL exits with the reason
    # (our own child: its exit status, not /proc, which can read empty while it starts).
    def logged_ready() -> bool:
        with open(LOG_PATH, "rb") as log:
            log.seek(offset)
            return READY.encode() in log.read()

    if process.wait_until(logged_ready, lambda: child.poll() is None, timeout_s):
        print(f"job worker: backtest and walk-forward jobs from Redis (log {LOG_PATH})")
        return 0
    print(
        f"error: the job worker did not start; last lines of {LOG_PATH}:\n"
        + process.log_tail(LOG_PATH),
        file=sys.stderr,
    )
    return 3


def down() -> int:
    # SIGTERM: a running job is queued again for the next worker.
    stopped = process.stop(PID_PATH, "worker")
    print("job worker stopped" if stopped else "no job worker of ours was running")
    return 0


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else "up"
    raise SystemExit(up() if action == "up" else down())
