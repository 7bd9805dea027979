"""Feature-state snapshots against the real MariaDB: a restart resumes the saved states only when
they were computed with the served spec from the series as stored now (no Triton involved)."""

from __future__ import annotations

import os
import time
from datetime import datetime
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest

from orchestrator.features.online import NotEnoughHistoryError, inputs_for_latest
from orchestrator.features.spec import FeatureSpec
from orchestrator.inference.feature_states import FeatureStates
from orchestrator.inference.prediction import BarCloseStats, FeatureKey, Prediction
from orchestrator.inference.series import SeriesIndex
from orchestrator.inference.snapshots import PEER_MAX_AGE_S
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import Timeframe
from tests.conftest import TrainedRepository
from tests.inference.markets import scaled_market, write_5m

M5, H1 = Timeframe.M5, Timeframe.H1
SYMBOLS = ("SNAPAUSD", "SNAPBUSD")


class Engine:
    """What the bar-close engine does around FeatureStates: targets, revisions, results."""

    def __init__(self, db: Database, path: Path, revisions: dict[tuple[str, Timeframe], int]):
        self.store = BarStore(db)
        self.stats = BarCloseStats()
        self.series = SeriesIndex()
        for series, revision in revisions.items():
            self.series.revised(series, revision)
        self.states = FeatureStates(self.stats, self.series, path)

    async def advance(
        self, spec: FeatureSpec, timeframe: Timeframe, targets: dict[str, datetime]
    ) -> dict[FeatureKey, Prediction | BaseException]:
        results: dict[FeatureKey, Prediction | BaseException] = {}
        keys = {(symbol, timeframe): target for symbol, target in targets.items()}
        for key, target in keys.items():
            self.series.bar_closed(key, target, M5)  # what the poller reports: stored at 5m
        ready = await self.states.advance(self.store, spec, timeframe, list(keys), keys, results)
        assert set(ready) | set(results) == set(keys)
        return results


def _last(frame: pd.DataFrame) -> datetime:
    return frame.index[-1].to_pydatetime()


@pytest.fixture
async def market(loaded: TrainedRepository, clean_db: Database) -> dict[str, pd.DataFrame]:
    return await scaled_market(clean_db, loaded.data[0].bars, SYMBOLS)


async def test_a_restart_resumes_the_saved_states_and_steps_them_over_new_bars(
    market: dict[str, pd.DataFrame], clean_db: Database, loaded: TrainedRepository, tmp_path: Path
) -> None:
    spec, path = loaded.models.spec, tmp_path / "states.pickle"
    first = Engine(clean_db, path, await BarStore(clean_db).revisions())
    await first.advance(spec, M5, {s: _last(f) for s, f in market.items()})
    assert first.stats.seeds == len(SYMBOLS)
    assert await first.states.save() is not None

    # A new bar lands while the engine is down; the restarted one resumes and steps.
    step = pd.Timedelta(minutes=5)
    new = {
        s: f.iloc[-1:].set_axis([f.index[-1] + step]).rename_axis(f.index.name)
        for s, f in market.items()
    }
    await write_5m(clean_db, new)
    second = Engine(clean_db, path, await BarStore(clean_db).revisions())
    results = await second.advance(spec, M5, {s: _last(f) for s, f in new.items()})
    assert results == {}
    assert (second.stats.states_resumed, second.stats.seeds) == (len(SYMBOLS), 0)
    assert second.stats.bars_stepped == len(SYMBOLS)
    for symbol in SYMBOLS:
        expected = inputs_for_latest(pd.concat([market[symbol], new[symbol]]), spec)
        got = second.states.features((symbol, M5))
        assert got is not None
        np.testing.assert_allclose(got.inputs().seq, expected.seq, rtol=1e-5, atol=1e-5)


async def test_a_new_replica_resumes_the_states_its_peers_saved_in_the_folder(
    market: dict[str, pd.DataFrame], clean_db: Database, loaded: TrainedRepository, tmp_path: Path
) -> None:
    """Two replicas computed one symbol each (as claims divide a sweep) and saved them: a third,
    with no snapshot of its own, resumes both from their files and seeds nothing; a replica
    restarted with its own file takes the rest from its peer's."""
    spec = loaded.models.spec
    targets = {s: _last(f) for s, f in market.items()}
    revisions = await BarStore(clean_db).revisions()
    for port, symbol in zip((8001, 8002), SYMBOLS, strict=True):
        replica = Engine(clean_db, tmp_path / f"states-{port}.pickle", revisions)
        await replica.advance(spec, M5, {symbol: targets[symbol]})
        assert replica.stats.seeds == 1
        await replica.states.save()

    new = Engine(clean_db, tmp_path / "states-8003.pickle", revisions)
    assert await new.advance(spec, M5, targets) == {}
    assert (new.stats.states_resumed, new.stats.states_resumed_from_peers) == (2, 2)
    assert new.stats.seeds == 0
    for symbol in SYMBOLS:
        got = new.states.features((symbol, M5))
        assert got is not None
        expected = inputs_for_latest(market[symbol], spec)
        np.testing.assert_allclose(got.inputs().seq, expected.seq, rtol=1e-5, atol=1e-5)

    restarted = Engine(clean_db, tmp_path / "states-8001.pickle", revisions)
    await restarted.advance(spec, M5, targets)
    assert (restarted.stats.states_resumed, restarted.stats.states_resumed_from_peers) == (2, 1)
    assert restarted.stats.seeds == 0

    # A peer silent for longer than PEER_MAX_AGE_S is gone: its file is passed over.
    gone = time.time() - PEER_MAX_AGE_S - 60
    os.utime(tmp_path / "states-8002.pickle", (gone, gone))
    later = Engine(clean_db, tmp_path / "states-8004.pickle", revisions)
    await later.advance(spec, M5, targets)
    assert (later.stats.states_resumed_from_peers, later.stats.seeds) == (1, 1)


async def test_a_snapshot_is_refused_after_a_spec_change_or_a_corrected_bar(
    market: dict[str, pd.DataFrame], clean_db: Database, loaded: TrainedRepository, tmp_path: Path
) -> None:
    spec, path = loaded.models.spec, tmp_path / "states.pickle"
    targets = {s: _last(f) for s, f in market.items()}
    first = Engine(clean_db, path, await BarStore(clean_db).revisions())
    await first.advance(spec, M5, targets)
    await first.states.save()

    # Another model version: other normalisation statistics, so every saved state is refused.
    retrained = msgspec.structs.replace(spec, mean=[m + 0.5 for m in spec.mean])
    other = Engine(clean_db, path, await BarStore(clean_db).revisions())
    await other.advance(retrained, M5, targets)
    assert (other.stats.states_resumed, other.stats.snapshot_refused) == (0, len(SYMBOLS))
    assert other.stats.seeds == len(SYMBOLS)

    # An old bar of one symbol corrected (its series revision moves): that one is re-seeded.
    corrected = market[SYMBOLS[0]].iloc[[-30]] * 1.01
    await write_5m(clean_db, {SYMBOLS[0]: corrected})
    revisions = await BarStore(clean_db).revisions()
    assert revisions.get((SYMBOLS[0], M5), 0) > 0
    third = Engine(clean_db, path, revisions)
    await third.advance(spec, M5, targets)
    assert (third.stats.states_resumed, third.stats.snapshot_refused) == (1, 1)
    assert third.stats.seeds == 1
    fixed = market[SYMBOLS[0]].copy()
    fixed.loc[corrected.index] = corrected
    features = third.states.features((SYMBOLS[0], M5))
    assert features is not None
    expected = inputs_for_latest(fixed, spec)
    np.testing.assert_allclose(features.inputs().seq, expected.seq, rtol=1e-5, atol=1e-5)


async def test_a_symbol_too_young_for_a_timeframe_is_refused_without_reading_its_bars(
    market: dict[str, pd.DataFrame], clean_db: Database, loaded: TrainedRepository, tmp_path: Path
) -> None:
    """Two weeks of 5m bars cannot hold the 1h bars a state needs: refused from the first bar's
    time, counted as too little history (not an error), and nothing seeded."""
    spec = msgspec.structs.replace(loaded.models.spec, timeframe="1h")
    young = {s: f.iloc[-4000:] for s, f in market.items()}
    engine = Engine(clean_db, tmp_path / "unused.pickle", {})
    targets = {s: H1.floor(_last(f)) - pd.Timedelta(hours=1) for s, f in young.items()}
    async with clean_db.transaction() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM bars WHERE symbol IN (%s, %s)", SYMBOLS)
    await write_5m(clean_db, young)
    results = await engine.advance(spec, H1, targets)
    assert set(results) == {(s, H1) for s in SYMBOLS}
    assert all(isinstance(r, NotEnoughHistoryError) for r in results.values())
    for failure in results.values():
        engine.stats.count_failure(failure)
    assert (engine.stats.not_enough_history, engine.stats.errors, engine.stats.seeds) == (2, 0, 0)
