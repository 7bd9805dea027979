"""Live quality: served predictions resolved against the bars that followed, in the real store,
counted once across replicas and restarts in the real Redis."""

from __future__ import annotations

import asyncio
import gc
import logging
import tracemalloc
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import pandas as pd
import pytest
from redis.asyncio import Redis

from export.train import TrainConfig, spec_from_stats
from orchestrator.devstack.process import free_ports
from orchestrator.devstack.redis import PrivateRedis
from orchestrator.features.baseline import BASELINE_INPUTS, BASELINE_VERSION, SEASON_CELLS
from orchestrator.features.head import Calibration, ServingHead
from orchestrator.features.indicators import FEATURE_NAMES
from orchestrator.features.online import ModelInputs
from orchestrator.features.spec import FeatureSpec
from orchestrator.inference.client import EnsembleOutput
from orchestrator.inference.prediction import Prediction
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore, SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.quality import totals
from orchestrator.quality.report import render
from orchestrator.quality.tracker import QualityTracker, VersionQuality

SYMBOL = "QLTYUSD"
H = 4  # horizons
START = pd.Timestamp("2024-03-04 00:00", tz="UTC")
DAY_S = 86400.0
NAMESPACE = "tme-test"
LAST_H = 1999 * 5 / 60  # the last stored bar, hours after START


def spec_for(timeframe: Timeframe) -> FeatureSpec:
    """A spec whose head serves the networks' mean, with a [0.5, 1.5] x range interval."""
    identity = Calibration([], [])
    head = ServingHead(
        baseline_version=BASELINE_VERSION,
        har_coef=[[0.8, 0, 0, 0, 0]] * 2 * H,  # the HAR baseline says 0.8 ATR everywhere
        log_har_coef=[[0.0] * 7] * 2 * H,
        log_har_smear=[1.0] * 2 * H,
        gk_coef=[[0.0] * 5] * 2 * H,
        seasonal=[[1.0] * 2 * H] * SEASON_CELLS,
        train_mean=[1.0] * 2 * H,
        stack=[[0.0, 0.5, 0.5, 0.0, 0.0, 0.0, 0.0]] * 2 * H,
        served=["networks"] * 2 * H,
        reference=["har"] * 2 * H,
        interval_level=0.8,
        interval_ratio=[[0.5, 1.5]] * 2 * H,
        p_long=identity,
        p_short=identity,
        confidence=identity,
    )
    n = len(FEATURE_NAMES)
    spec = spec_from_stats([0.0] * n, [1.0] * n, TrainConfig(timeframe=timeframe))
    return msgspec.structs.replace(spec, head=head)


SPEC = spec_for(Timeframe.M5)  # horizons of 6, 48, 288 and 1,440 bars; intraday is the label's


def make_prediction(
    bar: pd.Timestamp, symbol: str = SYMBOL, spec: FeatureSpec = SPEC
) -> Prediction:
    inputs = ModelInputs(
        np.empty((1, 0), np.float32),
        np.empty((1, 0), np.float32),
        np.empty((1, 0), np.float32),
        1.0,  # ATR
        100.0,
        bar,
        np.zeros((1, len(BASELINE_INPUTS))),
        np.zeros(1, np.int64),
    )
    ranges = np.ones((1, 2 * H), np.float32)  # 1 ATR up and down on every horizon
    out = EnsembleOutput(
        ranges, ranges, *(np.array([v], np.float32) for v in (0.6, 0.3, 0.65, 1.0)), "7"
    )
    return Prediction(symbol, spec.timeframe, bar.to_pydatetime(), "7", spec, inputs, out)


def _predictions() -> list[Prediction]:
    """The first two bars' predictions (every replica receives both)."""
    return [make_prediction(START), make_prediction(START + timedelta(minutes=5))]


def _closed(tracker: QualityTracker, hours: float) -> None:
    """The bar opening `hours` after START closed: the engine hands over its prediction (whose
    own horizons have not elapsed yet)."""
    tracker.record([make_prediction(START + timedelta(hours=hours))])


def _at(hours: float) -> datetime:
    moment: datetime = (START + timedelta(hours=hours)).to_pydatetime()
    return moment


async def store_bars(
    db: Database, symbol: str, start: pd.Timestamp, periods: int, high: float = 101.0
) -> BarStore:
    """`periods` 5m bars from `start`, each reaching `high` and 99.8 (1 and 0.2 ATR from the
    predictions' close)."""
    index = pd.date_range(start, periods=periods, freq="5min")
    bars = pd.DataFrame(
        {"open": 100.0, "high": high, "low": 99.8, "close": 100.0, "volume": 1.0}, index=index
    )
    bars.index.name = "ts"
    rows = bars.reset_index().assign(symbol=symbol, timeframe="5m")
    await write_bars(db, rows, {symbol: SymbolInfo(symbol, "crypto", 0.01)}, show_progress=False)
    return BarStore(db)


@pytest.fixture
async def store(clean_db: Database) -> BarStore:
    """2,000 5m bars (to START + 6 d 22:35)."""
    return await store_bars(clean_db, SYMBOL, START, 2000)


@pytest.fixture
async def redis(redis_flushed: str) -> AsyncIterator[Redis]:
    client = Redis.from_url(redis_flushed)
    yield client
    await client.aclose()


def resolved_counts(report: list[VersionQuality]) -> dict[str, int]:
    (entry,) = report
    return {h.horizon: h.resolved for h in entry.horizons}


async def test_coverage_skill_and_trades_are_resolved_from_the_stored_bars(
    store: BarStore,
) -> None:
    tracker = QualityTracker()  # no Redis: counted in memory
    tracker.record(_predictions())
    tracker.record(_predictions()[1:])  # the same bar again (another replica): counted once
    assert await tracker.resolve(store, now=_at(5)) == 0  # no later bar has closed yet
    # Only the scalping (6 bars) and intraday (48 bars) horizons have elapsed 5 hours later.
    _closed(tracker, 5)
    assert await tracker.resolve(store, now=_at(5)) == 4
    (report,) = tracker.report()
    assert (report.timeframe, report.model_version, report.interval_level) == ("5m", "7", 0.8)
    assert report.source == "memory"
    by_name = {h.horizon: h for h in report.horizons}
    assert set(by_name) == {"scalping", "intraday"}
    scalping = by_name["scalping"]
    assert scalping.resolved == 2
    assert scalping.coverage_high == 1.0  # realised up 1.0 in [0.5, 1.5]
    assert scalping.coverage_low == 0.0  # realised down 0.2 below 0.5
    assert scalping.recent_coverage == 0.5
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
    # At the last stored bar every horizon has elapsed, those of the bar 5 h in included.
    _closed(tracker, LAST_H)
    assert await tracker.resolve(store, now=_at(7 * 24)) == 4 + 4
    assert resolved_counts(tracker.report()) == {
        "scalping": 3,
        "intraday": 3,
        "swing": 3,
        "position": 3,
    }
    assert tracker.report()[0].trades == 3


async def test_shared_totals_survive_a_restart_and_are_not_counted_again(
    store: BarStore, redis: Redis
) -> None:
    first = QualityTracker(redis, namespace=NAMESPACE, claim_ttl_s=30 * DAY_S)
    first.record(_predictions())
    _closed(first, 5)
    assert await first.resolve(store, now=_at(5)) == 4
    assert first.shared.counted == 4
    before = first.report()
    assert before[0].source == "redis"
    assert resolved_counts(before) == {"scalping": 2, "intraday": 2}
    totals = await redis.hgetall(f"{NAMESPACE}:quality:totals:5m:v7")
    assert totals[b"scalping:resolved"] == b"2"
    assert totals[b"scalping:inside_high"] == b"2"
    assert totals[b"trades"] == b"2"
    assert totals[b"bin6:count"] == b"2"
    assert abs(float(totals[b"bin6:confidence"]) - 1.3) < 1e-6
    assert await redis.lrange(f"{NAMESPACE}:quality:drift:5m:v7:scalping", 0, -1) == [
        b"10",
        b"10",
    ]

    # A restart: a new tracker (nothing pending) reads the same totals back.
    restarted = QualityTracker(redis, namespace=NAMESPACE, claim_ttl_s=30 * DAY_S)
    assert restarted.report() == []
    await restarted.refresh()
    assert restarted.report() == before
    assert "shared by every replica (Redis)" in render(before)
    # The engine hands it the same predictions again: the horizons counted before the restart
    # are claimed already; only the two that elapse later are added.
    restarted.record(_predictions())
    _closed(restarted, LAST_H)
    assert await restarted.resolve(store, now=_at(7 * 24)) == 8
    assert (restarted.shared.counted, restarted.shared.counted_elsewhere) == (4, 4)
    (entry,) = restarted.report()
    assert resolved_counts([entry]) == {"scalping": 2, "intraday": 2, "swing": 2, "position": 2}
    assert entry.trades == 2
    assert {h.horizon: h.coverage_high for h in entry.horizons}["scalping"] == 1.0


async def test_two_replicas_count_each_outcome_once(
    store: BarStore, redis: Redis, redis_flushed: str
) -> None:
    other_client = Redis.from_url(redis_flushed)
    try:
        replicas = [
            QualityTracker(client, namespace=NAMESPACE, claim_ttl_s=DAY_S)
            for client in (redis, other_client)
        ]
        for replica in replicas:
            replica.record(_predictions())  # computed by one, received by the other
            _closed(replica, 5)
        resolved = await asyncio.gather(*(r.resolve(store, now=_at(5)) for r in replicas))
        assert resolved == [4, 4]  # both resolved every outcome ...
        assert sum(r.shared.counted for r in replicas) == 4  # ... and each was counted once
        assert sum(r.shared.counted_elsewhere for r in replicas) == 4
        for replica in replicas:
            await replica.refresh()
        first, second = (r.report() for r in replicas)
        assert first == second
        assert resolved_counts(first) == {"scalping": 2, "intraday": 2}
        assert first[0].trades == 2
        scalping = first[0].horizons[0]
        assert (scalping.coverage_high, scalping.coverage_low) == (1.0, 0.0)
        assert scalping.recent_coverage == 0.5
    finally:
        await other_client.aclose()


async def test_outcomes_kept_unsent_longer_than_a_claim_lives_are_not_counted(
    store: BarStore, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    server = PrivateRedis(port=port, base=tmp_path / "redis")  # not started yet
    client = Redis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    tracker = QualityTracker(client, namespace=NAMESPACE, claim_ttl_s=2 * 3600)
    tracker.record(_predictions())
    try:
        _closed(tracker, 5)
        assert await tracker.resolve(store, now=_at(5)) == 4  # Redis away: kept unsent
        # A day of bars later (the bars' times and the wall clock are unrelated): the swing
        # horizons of the first two, scalping and intraday of the bar 5 h in.
        _closed(tracker, 24 + 10 / 60)
        assert await tracker.resolve(store, now=_at(7.5)) == 4
        await asyncio.to_thread(server.start)
        # The first four waited 3 h unsent (past the 2 h claims, less the margin): another
        # replica's claims on them may have expired. The others waited half an hour.
        assert await tracker.resolve(store, now=_at(8)) == 0
        assert (tracker.shared.counted, tracker.shared.stale) == (4, 4)
        assert resolved_counts(tracker.report()) == {"scalping": 1, "intraday": 1, "swing": 2}
    finally:
        await client.aclose()
        await asyncio.to_thread(server.stop)


async def test_without_redis_counts_in_memory_then_sends_once_it_answers(
    store: BarStore, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (port,) = free_ports(1)
    server = PrivateRedis(port=port, base=tmp_path / "redis")  # not started yet
    client = Redis.from_url(server.url, socket_timeout=0.5, socket_connect_timeout=0.5)
    tracker = QualityTracker(client, namespace=NAMESPACE, claim_ttl_s=DAY_S)
    tracker.record(_predictions())
    _closed(tracker, 5)
    try:
        with caplog.at_level(logging.WARNING, logger="orchestrator.quality"):
            assert await tracker.resolve(store, now=_at(5)) == 4
            assert await tracker.resolve(store, now=_at(5.1)) == 0
        warnings = [r for r in caplog.records if "Redis unavailable" in r.getMessage()]
        assert len(warnings) == 1  # once per outage, not once per pass
        (report,) = tracker.report()
        assert report.source == "memory"
        assert "Redis did not answer" in render([report])
        assert resolved_counts([report]) == {"scalping": 2, "intraday": 2}
        assert report.trades == 2
        assert tracker.shared.counted == 0

        await asyncio.to_thread(server.start)
        assert await tracker.resolve(store, now=_at(5.2)) == 0  # nothing new, the rest sent
        assert tracker.shared.counted == 4
        (report,) = tracker.report()
        assert report.source == "redis"
        assert resolved_counts([report]) == {"scalping": 2, "intraday": 2}
        restarted = QualityTracker(client, namespace=NAMESPACE)
        await restarted.refresh()
        assert restarted.report() == [report]
    finally:
        await client.aclose()
        await asyncio.to_thread(server.stop)


async def test_resolved_trades_shift_the_served_probabilities(store: BarStore) -> None:
    """Both sides' trades are scored whatever the direction; the shift of each probability is
    its step times (wins - served probabilities) so far, the step scaled by the training set's
    symbols over the series served."""
    spec = msgspec.structs.replace(
        SPEC,
        head=msgspec.structs.replace(SPEC.head, probability_rate=0.01, rate_symbols=1),
    )
    tracker = QualityTracker()
    tracker.record(
        [
            make_prediction(START, spec=spec),
            make_prediction(START + timedelta(minutes=5), spec=spec),
        ]
    )
    _closed(tracker, 5)
    await tracker.resolve(store, now=_at(5))
    # Long: TP 1.5 ATR never reached -> lost; short: its stop 1 ATR up is touched -> lost.
    sums = tracker.shared.totals()[("5m", "7")].sums
    assert (sums["long:trades"], sums["long:wins"], sums["short:wins"]) == (2, 0, 0)
    (entry,) = tracker.report()
    long, short = entry.sides
    assert (long.side, long.trades, long.win_rate) == ("long", 2, 0.0)
    assert long.mean_p == pytest.approx(0.6)
    assert short.mean_p == pytest.approx(0.3)
    assert "long trades 2: won 0.000, served P(long wins) 0.600 on average" in render(
        tracker.report()
    )
    levels = tracker.levels("5m", "7", spec, served_series=1)
    assert levels is not None
    assert levels.probability_shift is not None
    np.testing.assert_allclose(
        levels.probability_shift, [0.01 * -1.2, 0.01 * -0.6, 0.01 * -1.3], atol=1e-6
    )
    halved = tracker.levels("5m", "7", spec, served_series=2)
    assert halved is not None
    assert halved.probability_shift is not None
    np.testing.assert_allclose(halved.probability_shift, levels.probability_shift / 2)
    served = make_prediction(START + timedelta(hours=6), spec=spec)
    served.levels = levels
    assert served.served.p_long[0] == pytest.approx(0.6 - 0.012, abs=1e-6)
    assert tracker.levels("5m", "7", SPEC, served_series=1) is None  # a head that adapts nothing


async def test_strides_keep_a_few_open_predictions_per_horizon_and_count_each_for_its_stride(
    store: BarStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every bar's prediction for a week, recorded as its bar closes and resolved every hour:
    at most ~24 open per horizon (6 for the 6-bar one) instead of up to 1,440, the totals count
    each scored outcome for the bars it stands for (within one stride of scoring all), and what
    the key holds after the week is its open rows alone (no bars, no object per prediction)."""
    monkeypatch.undo()  # the strides as served, not conftest's every-bar scoring
    tracemalloc.start()
    try:
        tracker = QualityTracker()
        bars = 2000
        most_open = 0
        for start in range(0, bars, 12):
            tracker.record(
                [
                    make_prediction(START + timedelta(minutes=5 * i))
                    for i in range(start, min(start + 12, bars))
                ]
            )
            await tracker.resolve(store, now=_at(start / 12))
            most_open = max(most_open, tracker.open_rows((SYMBOL, Timeframe.M5)))
        gc.collect()
        held = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(True, f"*{name}") for name in ("open_rows.py", "tracker.py")]
        )
    finally:
        tracemalloc.stop()
    assert totals.strides(SPEC.horizon_bars) == (1, 2, 12, 60)
    assert most_open <= 6 + 24 + 24 + 24 + 4  # (prediction, horizon) rows
    # ~24 KB (the arrays grow by doubling); the same measure gave ~80 KB before the rows: 66
    # open predictions as objects and arrays (~42 KB) and the 1,387 bars read for them (~35 KB).
    assert sum(stat.size for stat in held.statistics("filename")) <= 28 * 1024
    counted = resolved_counts(tracker.report())
    for name, horizon_bars in zip(SPEC.horizons, SPEC.horizon_bars, strict=True):
        every_bar = bars - horizon_bars  # predictions whose horizon ended inside the store
        stride = totals.strides([horizon_bars])[0]
        assert abs(counted[name] - every_bar) <= stride, (name, counted[name], every_bar)


@pytest.mark.parametrize("weights", [(1, 2, 12, 60), (1, 2, 4, 17), (3, 5, 7, 11)])
def test_the_horizons_that_score_a_bar_are_those_whose_stride_divides_it(
    weights: tuple[int, ...],
) -> None:
    for bar_number in range(0, 3 * 1155 + 7, 7):
        want = tuple(k for k, stride in enumerate(weights) if bar_number % stride == 0)
        assert totals.tracked_horizons(weights, bar_number) == want
