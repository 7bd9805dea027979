"""FeatureStates' cold start against the real MariaDB: the keys' bars are read and seeded in
batches, in a thread or in the seeding workers, each state what the batch pipeline gives for
its newest bar; a key whose bars cannot be read fails alone."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
import pytest

from orchestrator.features.online import inputs_for_latest
from orchestrator.inference import seeding
from orchestrator.inference.feature_states import FeatureStates
from orchestrator.inference.prediction import BarCloseStats, FeatureKey, Prediction
from orchestrator.inference.seeding import Seeder
from orchestrator.inference.series import SeriesIndex
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import InvalidSymbolError, Timeframe
from tests.conftest import TrainedRepository
from tests.inference.markets import scaled_market

M5 = Timeframe.M5
SYMBOLS = ("SEEDAUSD", "SEEDBUSD", "SEEDCUSD")


@pytest.fixture
async def market(loaded: TrainedRepository, clean_db: Database) -> dict[str, pd.DataFrame]:
    return await scaled_market(clean_db, loaded.data[0].bars, SYMBOLS)


@pytest.mark.parametrize("processes", [1, 2], ids=["thread", "workers"])
async def test_a_cold_start_seeds_in_batches_and_a_key_that_cannot_be_read_fails_alone(
    market: dict[str, pd.DataFrame],
    clean_db: Database,
    loaded: TrainedRepository,
    monkeypatch: pytest.MonkeyPatch,
    processes: int,
) -> None:
    monkeypatch.setattr(seeding, "SEED_BATCH", 2)  # three symbols: two batches
    monkeypatch.setattr(seeding, "POOL_MIN_SEEDS", 1)  # with two processes, the workers seed
    spec = loaded.models.spec
    stats, series = BarCloseStats(), SeriesIndex()
    states = FeatureStates(stats, series, None, Seeder(processes))
    targets: dict[FeatureKey, datetime] = {
        (symbol, M5): frame.index[-1].to_pydatetime() for symbol, frame in market.items()
    }
    unreadable = ("NOT A SYMBOL!", M5)  # its read raises; the others must not notice
    targets[unreadable] = next(iter(targets.values()))
    for key, target in targets.items():
        series.bar_closed(key, target, M5)
    results: dict[FeatureKey, Prediction | BaseException] = {}
    try:
        ready = await states.advance(BarStore(clean_db), spec, M5, list(targets), targets, results)
    finally:
        states.close()
    assert set(results) == {unreadable}
    assert isinstance(results[unreadable], InvalidSymbolError)
    assert set(ready) == {(symbol, M5) for symbol in SYMBOLS}
    assert (stats.seeds, stats.errors) == (len(SYMBOLS), 0)
    for symbol, frame in market.items():
        got, want = ready[(symbol, M5)].inputs(), inputs_for_latest(frame, spec)
        assert got.bar_time == want.bar_time
        np.testing.assert_allclose(got.seq, want.seq, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(got.har, want.har, rtol=1e-6, atol=1e-6)
        assert states.weeks[(symbol, M5)].always_open  # inferred from the bars: 24/7
