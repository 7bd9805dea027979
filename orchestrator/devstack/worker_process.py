"""`python -m orchestrator.devstack.worker_process up|down`: one job worker in the background for
`make run` (pid and log under .run/). More workers, on this or other machines, are started with
`python -m orchestrator worker` pointing at the same REDIS_URL and MYSQL_*."""

from __future__ import annotations

import os
import sys
import time

from orchestrator.devstack import process
from orchestrator.settings import RUN_DIR

PID_PATH = RUN_DIR / "worker.pid"
LOG_PATH = RUN_DIR / "worker.log"


def up(settle_s: float = 3.0) -> int:
    if process.running_pid(PID_PATH, "worker") is not None:
        print(f"job worker already running (log {LOG_PATH})")
        return 0
    process.spawn(
        [sys.executable, "-u", "-m", "orchestrator", "worker"],
        env=dict(os.environ),
        log_path=LOG_PATH,
        pid_path=PID_PATH,
    )
    # A worker that cannot reach Redis or MySQL exits at once with the reason in its log.
    deadline = time.monotonic() + settle_s
    while time.monotonic() < deadline:
        if process.running_pid(PID_PATH, "worker") is None:
            print(
                f"error: the job worker stopped; last lines of {LOG_PATH}:\n"
                + process.log_tail(LOG_PATH),
                file=sys.stderr,
            )
            return 3
        time.sleep(0.25)
    print(f"job worker: backtest and walk-forward jobs from Redis (log {LOG_PATH})")
    return 0


def down() -> int:
    # SIGTERM: a running job is queued again for the next worker.
    stopped = process.stop(PID_PATH, "worker")
    print("job worker stopped" if stopped else "no job worker of ours was running")
    return 0


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else "up"
    raise SystemExit(up() if action == "up" else down())
