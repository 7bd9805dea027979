"""How a training run is configured: light to import (no torch), so that `python -m export
train --help` can show the defaults at once."""

from __future__ import annotations

from dataclasses import dataclass

from orchestrator.features.horizons import Horizon
from orchestrator.marketdata.timeframes import Timeframe


@dataclass(frozen=True)
class TrainConfig:
    timeframe: Timeframe = Timeframe.M5
    folds: int = 5
    epochs: int = 8
    patience: int = 2
    batch_size: int = 256
    stride: int = 3  # adjacent windows are near-duplicates; train on every `stride`-th
    seed: int = 7
    tp_atr: float = 1.5
    sl_atr: float = 1.0
    label_horizon: Horizon = Horizon.INTRADAY
    xgb_rounds: int = 400
    learning_rate: float = 2e-3
    threads: int = 2
    show_progress: bool = True
    data_source: str = "the store's bars"  # said in the model card
