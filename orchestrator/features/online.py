"""Model inputs for one bar from the batch pipeline over a bounded tail of bars.

`inputs_for_latest` runs the training code over the last required_bars() bars (≈6 ms) and yields
the tensors training built for the same bar (indicator memory decays far below float32 precision
within the tail). Serving keeps incremental state instead (incremental.py) and uses this path as
its reference: the property tests, the backtest's per-bar equality check and the seed-style
benchmark baseline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from orchestrator.features.dataset import (
    F32,
    context_vectors,
    normalise,
    sequence_windows,
    tabular_vectors,
)
from orchestrator.features.indicators import LOOKBACK_BARS, compute_features
from orchestrator.features.spec import FeatureSpec


class NotEnoughHistoryError(ValueError):
    def __init__(self, have: int, need: int) -> None:
        self.have, self.need = have, need
        super().__init__(f"{have} bars available, {need} needed for features of the latest bar")


@dataclass(frozen=True)
class ModelInputs:
    seq: F32  # (1, window, F)
    tab: F32  # (1, 2F)
    ctx: F32  # (1, C)
    atr: float  # ATR of the latest bar, price units: turns ATR-unit outputs into prices
    close: float
    bar_time: pd.Timestamp


def required_bars(spec: FeatureSpec) -> int:
    return LOOKBACK_BARS + spec.window


def inputs_for_latest(bars: pd.DataFrame, spec: FeatureSpec) -> ModelInputs:
    """Model inputs for the newest bar of `bars` (only the last required_bars() are used)."""
    need = required_bars(spec)
    if len(bars) < need:
        raise NotEnoughHistoryError(len(bars), need)
    tail = bars.iloc[-need:]
    features = compute_features(tail)
    z = normalise(features, spec)
    end = np.array([len(tail) - 1], dtype=np.int64)
    seq = sequence_windows(z, end, spec.window)
    if not np.isfinite(seq).all():
        raise NotEnoughHistoryError(len(bars), need)
    return ModelInputs(
        seq,
        tabular_vectors(z, end),
        context_vectors(z, end),
        float(features["atr"].iloc[-1]),
        float(tail["close"].iloc[-1]),
        tail.index[-1],
    )
