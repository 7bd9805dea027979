"""Loaded by every Python process started with this folder on PYTHONPATH and GC_PROBE_DIR set
(`make bench-scale-gc`): each garbage collection's generation, duration and objects found, one
line per collection, to GC_PROBE_DIR/gc_<pid>.log. Measuring only: nothing in the product
imports it."""

from __future__ import annotations

import gc
import os
import sys
import time
from typing import Any, TextIO

_DIR = os.environ.get("GC_PROBE_DIR")
_started = [0.0]
_log: list[TextIO] = []


def _callback(phase: str, info: dict[str, Any]) -> None:
    if phase == "start":
        _started[0] = time.perf_counter()
        return
    took_ms = (time.perf_counter() - _started[0]) * 1e3
    if not _log:
        _log.append(open(os.path.join(str(_DIR), f"gc_{os.getpid()}.log"), "a", buffering=1))  # noqa: SIM115
        _log[0].write("argv " + " ".join(sys.argv) + "\n")
    _log[0].write(f"{time.time():.3f} {info['generation']} {took_ms:.3f} {info['collected']}\n")


if _DIR:
    gc.callbacks.append(_callback)
