"""Model inputs of many feature states at once: what `IncrementalFeatures.inputs()` answers for
each, gathered into the arrays one Triton request sends.

A sweep asks for the inputs of thousands of states. One `inputs()` call is a dozen small numpy
operations on one state's ring, ~13 µs, and the request then concatenates the rows again; the
profile of a 10,000-symbol sweep put it at an eighth of the event loop. Here the rings are
stacked once and every step runs over the whole batch, in the same order of operations as
`inputs()` (the summary mean adds rows one after another in both), so each row equals that
state's own `inputs()` bit for bit (tests/features/test_batch_inputs.py).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import pandas as pd

from orchestrator.features.baseline import BASELINE_INPUTS
from orchestrator.features.dataset import F32
from orchestrator.features.incremental import IncrementalFeatures
from orchestrator.features.online import NO_TENSOR, ModelInputs, NotEnoughHistoryError
from orchestrator.features.spec import TABULAR_SUMMARY_BARS

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
_SECONDS_PER_DAY = 86_400
_THURSDAY = 3  # 1970-01-01, epoch day 0, in pandas' dayofweek (Monday = 0)


@dataclass(frozen=True)
class InputBatch:
    """The accepted states' inputs, one row each, in the order they were given."""

    accepted: list[int]  # positions of the states these rows belong to
    refused: dict[int, NotEnoughHistoryError]  # positions of states whose window is not ready
    seq: F32  # (n, window, F)
    tab: F32  # (n, 2F)
    ctx: F32  # (n, C)
    har: F64  # (n, len(BASELINE_INPUTS))
    season: I64  # (n,)
    rows: list[ModelInputs]  # per row, without the network tensors: what a prediction keeps


def batch_inputs(states: Sequence[IncrementalFeatures]) -> InputBatch:
    """`inputs()` of every state (one spec: equal ring shapes), as one batch."""
    if not states:
        return _empty()
    first = states[0]
    spec, size = first.spec, first.ring_size
    need = first.required
    rings = np.stack([state.ring for state in states])  # (n, size, F), each newest at its slot
    slots = np.fromiter((state.newest_slot for state in states), np.intp, len(states))
    counts = np.fromiter((state.bar_count for state in states), np.int64, len(states))
    order = (slots[:, np.newaxis] + 1 + np.arange(size)) % size  # oldest first, per state
    # Whole rows picked by (state, slot): take_along_axis would index every value (3.5 MB of
    # indices for 256 states), the largest part of this function in the sweep's profile.
    rows = rings[np.arange(len(states))[:, np.newaxis], order]
    seq_all = rows[:, size - spec.window :]
    ready = (counts >= need) & np.isfinite(seq_all).all(axis=(1, 2))
    accepted = np.flatnonzero(ready).tolist()
    refused = {int(i): NotEnoughHistoryError(int(counts[i]), need) for i in np.flatnonzero(~ready)}
    if not accepted:
        return _empty(refused)
    if len(accepted) < len(states):
        rows, seq_all = rows[ready], seq_all[ready]
    kept = [states[i] for i in accepted]
    latest = rows[:, -1]
    summary = rows[:, size - TABULAR_SUMMARY_BARS :].astype(np.float64)
    means = summary.sum(axis=1) / TABULAR_SUMMARY_BARS
    tab = np.concatenate([latest, means], axis=1).astype(np.float32)
    atr = [state.atr for state in kept]
    close = [state.last_bar[3] for state in kept]
    times = [state.last_time for state in kept]
    har = _baseline_inputs(kept, atr, close)
    season = _season_cells(times)
    per_row = [
        ModelInputs(NO_TENSOR, NO_TENSOR, NO_TENSOR, a, c, t, har[i : i + 1], season[i : i + 1])
        for i, (a, c, t) in enumerate(zip(atr, close, times, strict=True))
    ]
    return InputBatch(
        accepted,
        refused,
        np.ascontiguousarray(seq_all),
        tab,
        np.ascontiguousarray(latest[:, first.context_columns]),
        har,
        season,
        per_row,
    )


def _baseline_inputs(
    states: Sequence[IncrementalFeatures], atr: list[float], close: list[float]
) -> F64:
    """BaselineWindow.features of every state: the same arithmetic over (n, windows) arrays."""
    windows = np.asarray(states[0].baseline.windows, np.float64)
    sums = np.array([state.baseline.sums for state in states], np.float64)  # (n, W, 3)
    counts = np.fromiter((state.baseline.count for state in states), np.float64, len(states))
    offsets = np.fromiter((state.baseline.offset for state in states), np.float64, len(states))
    known = (counts > 0) & (np.asarray(atr) > 0)  # `not atr > 0` is also true for NaN
    with np.errstate(divide="ignore", invalid="ignore"):
        scale = np.asarray(atr) / np.asarray(close)
        # math.log per value, as the scalar path takes it (numpy's vector log may round the
        # last bit differently).
        log_atr = np.array([math.log(x) if x > 0 else math.nan for x in scale.tolist()])
        count = np.minimum(windows[np.newaxis], counts[:, np.newaxis])
        har = sums[:, :, 0] / count + offsets[:, np.newaxis] - log_atr[:, np.newaxis]
        mean_gk = sums[:, :, 1] / count
        gk = np.where(mean_gk >= 0.0, np.sqrt(mean_gk) / scale[:, np.newaxis], np.nan)
        leverage = sums[:, 2:, 2] / count[:, 2:] / scale[:, np.newaxis]
    out: F64 = np.concatenate([har, gk, leverage], axis=1)
    out[~np.isfinite(out)] = np.nan
    out[~known] = np.nan
    if out.shape[1] != len(BASELINE_INPUTS):
        raise RuntimeError("batch_inputs computes other baseline inputs than baseline.py defines")
    return out


def _season_cells(times: list[pd.Timestamp]) -> I64:
    """season_cell of each open time, from its epoch seconds (UTC whatever its timezone)."""
    seconds = np.fromiter((t.value for t in times), np.int64, len(times)) // 1_000_000_000
    days, within = np.divmod(seconds, _SECONDS_PER_DAY)
    cells: I64 = ((days + _THURSDAY) % 7) * 24 + within // 3600
    return cells


def _empty(refused: dict[int, NotEnoughHistoryError] | None = None) -> InputBatch:
    nothing = np.empty((0, 0), np.float32)
    return InputBatch(
        [],
        refused or {},
        nothing,
        nothing,
        nothing,
        np.empty((0, len(BASELINE_INPUTS))),
        np.empty(0, np.int64),
        [],
    )
