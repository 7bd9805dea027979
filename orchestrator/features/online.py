"""Model inputs for one bar from the batch pipeline over a bounded tail of bars.

`inputs_for_latest` runs the training code over the last required_bars() bars (≈6 ms) and yields
the tensors training built for the same bar (indicator memory decays far below float32 precision
within the tail). Serving keeps incremental state instead (incremental.py) and uses this path as
its reference: the property tests, the backtest's per-bar equality check and the seed-style
benchmark baseline.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pandas as pd

from orchestrator.errors import NotEnoughDataError
from orchestrator.features.baseline import baseline_features, history_bars, season_cells
from orchestrator.features.dataset import (
    F32,
    context_vectors,
    normalise,
    sequence_windows,
    tabular_vectors,
)
from orchestrator.features.indicators import LOOKBACK_BARS, compute_features
from orchestrator.features.spec import FeatureSpec
from orchestrator.marketdata.timeframes import Timeframe


class NotEnoughHistoryError(NotEnoughDataError):
    def __init__(self, have: int, need: int) -> None:
        self.have, self.need = have, need
        super().__init__(
            f"{have} bars available, {need} needed for features of the latest bar; ingest more "
            "bars for this symbol"
        )

    def __reduce__(self) -> tuple[type[NotEnoughHistoryError], tuple[int, int]]:
        """Pickled by its counts (a seeding worker sends it back in a batch's answers)."""
        return type(self), (self.have, self.need)


@dataclass(frozen=True)
class ModelInputs:
    seq: F32  # (1, window, F)
    tab: F32  # (1, 2F)
    ctx: F32  # (1, C)
    atr: float  # ATR of the latest bar, price units: turns ATR-unit outputs into prices
    close: float
    bar_time: pd.Timestamp
    # The baselines' inputs (features/baseline.py), read by the serving head: (1, 4) and (1,).
    har: npt.NDArray[np.float64] = field(default_factory=lambda: np.full((1, 4), np.nan))
    season: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(1, np.int64))

    def without_tensors(self) -> ModelInputs:
        """These inputs less the network tensors (about 8 KB a key): what a kept prediction
        needs once Triton has answered (close, ATR, the baselines' inputs). Built directly: once
        per prediction in every sweep, and dataclasses.replace costs several times more."""
        empty = NO_TENSOR
        return ModelInputs(
            empty, empty, empty, self.atr, self.close, self.bar_time, self.har, self.season
        )


NO_TENSOR = np.empty((1, 0), dtype=np.float32)  # a tensor that was not kept


def required_bars(spec: FeatureSpec) -> int:
    """Bars the network inputs of the newest bar read."""
    return LOOKBACK_BARS + spec.window


def seed_bars(spec: FeatureSpec) -> int:
    """Bars a serving state is seeded from: the network inputs' tail, or the baselines' longest
    window (a week of bars) when that is longer."""
    return max(required_bars(spec), history_bars(Timeframe(spec.timeframe)))


def inputs_for_latest(bars: pd.DataFrame, spec: FeatureSpec) -> ModelInputs:
    """Model inputs for the newest bar of `bars` (the network inputs read the last
    required_bars(), the baselines the last seed_bars())."""
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
    atr = float(features["atr"].iloc[-1])
    history = bars.iloc[-seed_bars(spec) :]
    atr_column = np.full(len(history), np.nan)
    atr_column[-1] = atr
    har = baseline_features(history, atr_column, Timeframe(spec.timeframe))[-1:]
    return ModelInputs(
        seq,
        tabular_vectors(z, end),
        context_vectors(z, end),
        atr,
        float(tail["close"].iloc[-1]),
        tail.index[-1],
        har,
        season_cells(pd.DatetimeIndex(tail.index[-1:])),
    )
