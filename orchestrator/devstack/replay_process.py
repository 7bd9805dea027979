"""`python -m orchestrator.devstack.replay_process up|down`: the market replay in the background
for `make run` (pid and log under .run/). REPLAY_INTERVAL_S sets seconds per appended bar;
REPLAY_SOURCE=real (`make run DATA=real`) appends the real series' held-back bars."""

from __future__ import annotations

import os
import sys

from orchestrator.devstack import process
from orchestrator.settings import RUN_DIR

PID_PATH = RUN_DIR / "replay.pid"
LOG_PATH = RUN_DIR / "replay.log"


def up() -> int:
    if process.running_pid(PID_PATH, "replay") is not None:
        print(f"market replay already running (log {LOG_PATH})")
        return 0
    interval_s = os.environ.get("REPLAY_INTERVAL_S", "5")
    source = os.environ.get("REPLAY_SOURCE", "demo")
    command = ["replay", "--source", source, "--interval-s", interval_s]
    if os.environ.get("REPLAY_SYMBOLS"):
        command += ["--symbols", os.environ["REPLAY_SYMBOLS"]]
    process.spawn(
        [sys.executable, "-u", "-m", "orchestrator", *command],
        env=dict(os.environ),
        log_path=LOG_PATH,
        pid_path=PID_PATH,
    )
    what = "5m bar" if source == "demo" else "held-back real bar"
    print(f"market replay: one {what} per symbol every {interval_s} s (log {LOG_PATH})")
    return 0


def down() -> int:
    stopped = process.stop(PID_PATH, "replay")
    print("market replay stopped" if stopped else "no market replay of ours was running")
    return 0


if __name__ == "__main__":
    action = sys.argv[1] if len(sys.argv) > 1 else "up"
    raise SystemExit(up() if action == "up" else down())
