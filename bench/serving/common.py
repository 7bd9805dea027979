"""Settings and helpers every part of the serving benchmark shares: the benchmark's constants
(symbol prefix, concurrency levels, parts, model repository, results folder), the Json and F32
aliases, and `log`, the progress line with elapsed time. Kept apart so each module, and
bench/triton_tuning.py, can import them without pulling in the rest.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from orchestrator.devstack.triton import latest_version
from orchestrator.settings import PROJECT_ROOT

N_MAX = 1000
PREFIX = "BSV"
EXTRA_BARS = 40  # history beyond required_bars(), so both services can score every symbol
CONCURRENCY = (1, 16, 64)
PA_CONCURRENCY = (1, 2, 4, 8, 16, 32, 64)
SWEEP_SIZES = (100, 1000)
SWEEP_CONCURRENCY = 16
PARTS = ("warm", "cold", "sweep", "barrier", "perf", "batching", "backtest")
HTTP_PARTS = {"warm", "cold", "sweep", "barrier"}
MODEL_PARTS = {"perf", "batching", "backtest"}
ENSEMBLE = "signal_ensemble"
REPOSITORY = PROJECT_ROOT / "model_repository" / "cpu"
VERSION_DIR = latest_version(REPOSITORY / ENSEMBLE)
RESULTS = Path(__file__).parent.parent / "results"  # bench/results
PERF_ANALYZER = PROJECT_ROOT / ".venv" / "bin" / "perf_analyzer"
BACKTEST_ROWS = 20_000
STEP = pd.Timedelta(minutes=5)
INSERT_BAR = (
    "INSERT INTO bars (symbol, timeframe, ts, open, high, low, close, volume)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)"
)
F32 = npt.NDArray[np.float32]
Json = dict[str, Any]

_STARTED = time.monotonic()


def log(message: str) -> None:
    """Progress lines with elapsed time: a full run takes many minutes."""
    print(f"[{time.monotonic() - _STARTED:7.1f}s] {message}", flush=True)
