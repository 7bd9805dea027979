"""`python -m orchestrator.devstack.api_process up|down`: the API as a background process for
`make run`, with its pid and log under .run/."""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request

from orchestrator.devstack import process
from orchestrator.settings import RUN_DIR, ApiSettings

PID_PATH = RUN_DIR / "orchestrator.pid"
LOG_PATH = RUN_DIR / "orchestrator.log"


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2.0) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def up(timeout_s: float = 60.0) -> int:
    port = ApiSettings.from_env().port
    if process.running_pid(PID_PATH, "orchestrator") is None:
        if _healthy(port):
            print(f"error: port {port} already serves something; set API_PORT", file=sys.stderr)
            return 3
        process.spawn(
            [sys.executable, "-m", "orchestrator", "serve"],
            env=dict(os.environ),
            log_path=LOG_PATH,
            pid_path=PID_PATH,
        )

    def alive() -> bool:
        return process.running_pid(PID_PATH, "orchestrator") is not None

    if process.wait_until(lambda: _healthy(port), alive, timeout_s):
        print(f"orchestrator ready on http://127.0.0.1:{port} (log {LOG_PATH})")
        return 0
    print(
        f"error: the orchestrator did not come up; last lines of {LOG_PATH}:\n"
        + process.log_tail(LOG_PATH),
        file=sys.stderr,
    )
    return 3


def down() -> int:
    stopped = process.stop(PID_PATH, "orchestrator")
    print("orchestrator stopped" if stopped else "no orchestrator of ours was running")
    return 0


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else "up"
    raise SystemExit(up() if action == "up" else down())
