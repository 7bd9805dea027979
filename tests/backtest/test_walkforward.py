"""The leak test: walk-forward backtests retrain before every window, so on a series without
structure the expectancy is noise around 0R, and on a series with a planted, learnable pattern
it is clearly positive. Each window's models must have seen only bars before the window.

Both series are generated here: a geometric random walk with constant volatility (nothing to
learn), and the same walk plus a deterministic time-of-day drift (up in the first half of the
UTC day, down in the second): the hour features tell every bar which way the next bars lean.
TINY models on the scalping horizon (6 bars) keep training to seconds and trades numerous.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field, replace
from datetime import timedelta

import msgspec
import numpy as np
import pandas as pd
import pytest

from export.train import SymbolData, TrainConfig, TrainedModels, train_all
from export.walkforward import WalkForwardConfig, run_walk_forward, scratch_slot
from orchestrator.backtest.report import BacktestResult
from orchestrator.backtest.request import BacktestRequest, BacktestRequestError
from orchestrator.features.horizons import Horizon
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe
from tests.conftest import TINY

BARS = 8000
TEST_FROM = 4000  # first test bar: ~2,400 training samples before the first window
WINDOWS = 2
CONFIG = WalkForwardConfig(windows=WINDOWS, train=replace(TINY, label_horizon=Horizon.SCALPING))


def synthetic_bars(n: int, seed: int, drift_per_vol: float) -> pd.DataFrame:
    """GBM bars from a 12-step intrabar path (consistent OHLC, no gaps), 0.2% vol per bar, plus
    a drift of drift_per_vol x vol x sin(2 pi x time of day)."""
    rng = np.random.default_rng(seed)
    index = pd.date_range("2025-01-01", periods=n, freq="5min", tz="UTC", name="ts")
    sigma, steps = 0.002, 12
    minute = index.hour.to_numpy() * 60 + index.minute.to_numpy()
    drift = drift_per_vol * sigma * np.sin(2 * np.pi * minute / 1440)
    moves = rng.standard_normal((n, steps)) * sigma / np.sqrt(steps) + (drift / steps)[:, None]
    log_open = np.log(100.0) + np.concatenate([[0.0], np.cumsum(moves.sum(axis=1))[:-1]])
    path = log_open[:, None] + np.cumsum(moves, axis=1)
    open_, close = np.exp(log_open), np.exp(path[:, -1])
    high = np.maximum(np.exp(path.max(axis=1)), np.maximum(open_, close))
    low = np.minimum(np.exp(path.min(axis=1)), np.minimum(open_, close))
    frame = pd.DataFrame(
        {"open": open_, "high": high, "low": low, "close": close},
        index=index,
    ).round(6)
    frame["volume"] = rng.lognormal(3.0, 0.3, n).round(4)
    return frame


@dataclass
class RecordingTrainer:
    """train_all, remembering the newest bar of every training set it was given."""

    last_bars: list[pd.Timestamp] = field(default_factory=list)

    def __call__(self, data: list[SymbolData], cfg: TrainConfig) -> TrainedModels:
        self.last_bars.append(max(item.bars.index[-1] for item in data))
        return train_all(data, cfg)


async def _store(db: Database, symbol: str, bars: pd.DataFrame) -> None:
    frame = bars.reset_index().assign(symbol=symbol, timeframe="5m")
    info = {symbol: SymbolInfo(symbol, "crypto", 0.000001, Timeframe.M5)}
    await write_bars(db, frame, info, show_progress=False)


def _request(symbol: str, bars: pd.DataFrame, test_from: int = TEST_FROM) -> BacktestRequest:
    """Every bar signals (no minimum edge, thresholds at 0): the test is about the direction the
    models learned, not about the filter."""
    return BacktestRequest(
        symbol=symbol,
        start=bars.index[test_from].to_pydatetime(),
        end=bars.index[-1].to_pydatetime() + timedelta(minutes=5),
        strategy="baseline",
        min_expected_r=-1.0,
        min_confidence=0.0,
        min_range_tp_ratio=0.0,
    )


def _check_windows(result: BacktestResult, trainer: RecordingTrainer) -> None:
    """Contiguous windows covering the range, each trained only on bars before it."""
    report = result.walk_forward
    assert report is not None
    windows = report.windows
    assert len(windows) == len(trainer.last_bars) == WINDOWS
    assert windows[0].start == result.first_bar
    assert sum(w.test_bars for w in windows) == result.bars
    for window, next_window in itertools.pairwise(windows):
        assert window.end == next_window.start
    for window, seen in zip(windows, trainer.last_bars, strict=True):
        assert seen < window.start, f"window {window.index} trained on {seen} >= {window.start}"
        assert window.train_last_bar == seen
        assert window.last_label_bar <= window.train_last_bar < window.start
        assert window.train_samples >= 2000
    assert [w.model_version for w in windows] == [str(i + 1) for i in range(WINDOWS)]
    assert result.model_version == ",".join(w.model_version for w in windows)


def _ci(result: BacktestResult) -> tuple[float, float, float, int]:
    stats = result.metrics.overall
    assert stats.expectancy_r is not None
    assert stats.expectancy_ci95_low is not None
    assert stats.expectancy_ci95_high is not None
    return stats.expectancy_r, stats.expectancy_ci95_low, stats.expectancy_ci95_high, stats.n_trades


async def test_walk_forward_on_a_random_walk_earns_nothing(clean_db: Database) -> None:
    bars = synthetic_bars(BARS, seed=3, drift_per_vol=0.0)
    await _store(clean_db, "RANDWALK", bars)
    trainer = RecordingTrainer()
    result = await run_walk_forward(
        _request("RANDWALK", bars), db=clean_db, config=CONFIG, trainer=trainer
    )
    _check_windows(result, trainer)
    mean, low, high, trades = _ci(result)
    assert trades >= 500
    assert low <= 0.0 <= high or abs(mean) < 0.05, (
        f"random walk: expectancy {mean:+.3f} R, 95% CI [{low:+.3f}, {high:+.3f}] over "
        f"{trades} trades does not contain 0: the backtest leaks future information"
    )
    print(f"random walk: expectancy {mean:+.3f} R, 95% CI [{low:+.3f}, {high:+.3f}], n={trades}")


async def test_walk_forward_finds_a_planted_pattern(clean_db: Database) -> None:
    bars = synthetic_bars(BARS, seed=5, drift_per_vol=0.6)
    await _store(clean_db, "PATTERN", bars)
    trainer = RecordingTrainer()
    async with scratch_slot() as slot:  # a caller-provided server, as the API could pass
        result = await run_walk_forward(
            _request("PATTERN", bars), db=clean_db, config=CONFIG, slot=slot, trainer=trainer
        )
    _check_windows(result, trainer)
    mean, low, high, trades = _ci(result)
    assert trades >= 500
    assert low > 0.1, (
        f"planted pattern: expectancy {mean:+.3f} R, 95% CI [{low:+.3f}, {high:+.3f}] over "
        f"{trades} trades: the walk-forward models did not learn a pattern the features reveal"
    )
    print(f"pattern: expectancy {mean:+.3f} R, 95% CI [{low:+.3f}, {high:+.3f}], n={trades}")


async def test_walk_forward_request_errors_fail_before_any_server_starts(
    clean_db: Database,
) -> None:
    bars = synthetic_bars(3000, seed=1, drift_per_vol=0.0)
    await _store(clean_db, "SHORTRW", bars)
    request = _request("SHORTRW", bars, test_from=1000)
    with pytest.raises(BacktestRequestError, match="cannot train on the 1000 bars") as caught:
        await run_walk_forward(request, db=clean_db, config=CONFIG)
    assert caught.value.field == "walk_forward"
    with pytest.raises(BacktestRequestError, match="at least 1 window"):
        await run_walk_forward(request, db=clean_db, config=replace(CONFIG, windows=0))
    with pytest.raises(BacktestRequestError) as caught:
        await run_walk_forward(
            msgspec.structs.replace(request, timeframe="7m"), db=clean_db, config=CONFIG
        )
    assert caught.value.field == "timeframe"
