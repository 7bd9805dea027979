"""Live quality: served predictions resolved against the bars that followed, in the real store."""

from __future__ import annotations

from datetime import timedelta

import msgspec
import numpy as np
import pandas as pd

from export.train import TrainConfig, spec_from_stats
from orchestrator.features.baseline import BASELINE_VERSION, SEASON_CELLS
from orchestrator.features.head import Calibration, ServingHead
from orchestrator.features.indicators import FEATURE_NAMES
from orchestrator.features.online import ModelInputs
from orchestrator.features.spec import FeatureSpec
from orchestrator.inference.client import EnsembleOutput
from orchestrator.inference.prediction import Prediction
from orchestrator.inference.quality import QualityTracker
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore, SymbolInfo

SYMBOL = "QLTYUSD"
H = 4  # horizons


def _spec() -> FeatureSpec:
    """A spec whose head serves the networks' mean, with a [0.5, 1.5] x range interval."""
    identity = Calibration([], [])
    head = ServingHead(
        baseline_version=BASELINE_VERSION,
        har_coef=[[0.8, 0, 0, 0, 0]] * 2 * H,  # the HAR baseline says 0.8 ATR everywhere
        seasonal=[[1.0] * 2 * H] * SEASON_CELLS,
        stack=[[0.0, 0.5, 0.5, 0.0, 0.0]] * 2 * H,
        interval_level=0.8,
        interval_ratio=[[0.5, 1.5]] * 2 * H,
        p_long=identity,
        p_short=identity,
        confidence=identity,
    )
    n = len(FEATURE_NAMES)
    spec = spec_from_stats([0.0] * n, [1.0] * n, TrainConfig())
    return msgspec.structs.replace(spec, head=head)


async def test_coverage_skill_and_trades_are_resolved_from_the_stored_bars(
    clean_db: Database,
) -> None:
    spec = _spec()
    start = pd.Timestamp("2024-03-04 00:00", tz="UTC")
    index = pd.date_range(start, periods=2000, freq="5min")
    # After the first bar: every bar reaches 1 ATR above the close and 0.2 below it.
    bars = pd.DataFrame(
        {"open": 100.0, "high": 101.0, "low": 99.8, "close": 100.0, "volume": 1.0}, index=index
    )
    bars.index.name = "ts"
    rows = bars.reset_index().assign(symbol=SYMBOL, timeframe="5m")
    await write_bars(
        clean_db, rows, {SYMBOL: SymbolInfo(SYMBOL, "crypto", 0.01)}, show_progress=False
    )

    def prediction(bar: pd.Timestamp) -> Prediction:
        inputs = ModelInputs(
            np.empty((1, 0), np.float32),
            np.empty((1, 0), np.float32),
            np.empty((1, 0), np.float32),
            1.0,  # ATR
            100.0,
            bar,
            np.zeros((1, 4)),
            np.zeros(1, np.int64),
        )
        ranges = np.ones((1, 2 * H), np.float32)  # 1 ATR up and down on every horizon
        out = EnsembleOutput(
            ranges, ranges, *(np.array([v], np.float32) for v in (0.6, 0.3, 0.65, 1.0)), "7"
        )
        return Prediction(SYMBOL, "5m", bar.to_pydatetime(), "7", spec, inputs, out)

    tracker = QualityTracker()
    tracker.record([prediction(index[0]), prediction(index[1])])
    tracker.record([prediction(index[1])])  # the same bar again (another replica): counted once
    store = BarStore(clean_db)
    # Only the scalping (6 bars) and intraday (48 bars) horizons have elapsed 5 hours later.
    resolved = await tracker.resolve(store, now=(start + timedelta(hours=5)).to_pydatetime())
    assert resolved == 4
    (report,) = tracker.report()
    assert (report.timeframe, report.model_version, report.interval_level) == ("5m", "7", 0.8)
    by_name = {h.horizon: h for h in report.horizons}
    assert set(by_name) == {"scalping", "intraday"}
    scalping = by_name["scalping"]
    assert scalping.resolved == 2
    assert scalping.coverage_high == 1.0  # realised up 1.0 in [0.5, 1.5]
    assert scalping.coverage_low == 0.0  # realised down 0.2 below 0.5
    assert scalping.mse_served is not None
    assert abs(scalping.mse_served - (0.0 + 0.8**2) / 2) < 1e-12
    assert scalping.mse_baseline is not None
    assert scalping.skill is not None
    assert abs(scalping.mse_baseline - (0.2**2 + 0.6**2) / 2) < 1e-12
    assert abs(scalping.skill - (1 - 0.64 / 0.4)) < 1e-12
    # Intraday is the label horizon: long, TP 1.5 ATR and SL 1 ATR never touched -> a loss.
    assert report.trades == 2
    assert report.win_rate == 0.0
    assert report.mean_confidence is not None
    assert abs(report.mean_confidence - 0.65) < 1e-6
    assert report.reliability[0].bin == "0.6-0.7"
    # Every horizon elapsed a week later: all resolved, nothing pending any more.
    assert await tracker.resolve(store, now=(start + timedelta(days=7)).to_pydatetime()) == 4
    assert {h.horizon: h.resolved for h in tracker.report()[0].horizons} == {
        "scalping": 2,
        "intraday": 2,
        "swing": 2,
        "position": 2,
    }
