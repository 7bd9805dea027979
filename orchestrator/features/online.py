"""Serving-side features: the same functions as training, over a bounded tail of bars.

`OnlineFeatures` keeps the last LOOKBACK_BARS bars of a symbol; a new bar costs one pass over that
tail (~30 ms) instead of the whole history, and yields exactly the tensors training built for the
same bar (indicator memory decays far below float32 precision within the tail).
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


class OnlineFeatures:
    """A rolling tail of bars for one symbol; append bars as they land."""

    def __init__(self, spec: FeatureSpec, history: pd.DataFrame) -> None:
        self.spec = spec
        self._bars = history.iloc[-required_bars(spec) :].copy()

    def append(self, bar: pd.DataFrame) -> ModelInputs:
        self._bars = pd.concat([self._bars, bar]).iloc[-required_bars(self.spec) :]
        return inputs_for_latest(self._bars, self.spec)

    def latest(self) -> ModelInputs:
        return inputs_for_latest(self._bars, self.spec)
