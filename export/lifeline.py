"""A training process started by a worker dies with that worker.

The worker (export/retrain.py) names itself in `TRAIN_PARENT_PID`; the child asks Linux to kill
it when its parent dies (PR_SET_PDEATHSIG) and then checks that the parent is still the one
named, closing the window where the parent died first. Done in the child at start-up rather
than in a `preexec_fn` between fork and exec: the worker runs gRPC threads, and Python code
after a fork in a threaded process can deadlock.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PARENT_VARIABLE = "TRAIN_PARENT_PID"
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    parent = os.environ.get(PARENT_VARIABLE)
    if not parent or not sys.platform.startswith("linux"):
        return
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != int(parent):
        raise SystemExit("the worker that started this training is gone; stopping")
