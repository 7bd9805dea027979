"""Live quality reads bars only where a horizon is due, and only bars the recorded predictions
say have closed: never the wall clock (historical bar times, resampled buckets still forming)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

import pandas as pd
from redis.asyncio import Redis

from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.quality.tracker import QualityTracker
from tests.quality.test_tracker import (
    NAMESPACE,
    START,
    SYMBOL,
    make_prediction,
    resolved_counts,
    spec_for,
    store_bars,
)

FIVE_MIN = timedelta(minutes=5)


class _CountingStore(BarStore):
    """The real store, noting every bar read."""

    def __init__(self, db: Database) -> None:
        super().__init__(db)
        self.reads: list[tuple[datetime, datetime]] = []

    async def bars_between_many(
        self, timeframe: Timeframe, spans: Mapping[str, tuple[datetime, datetime]]
    ) -> dict[str, pd.DataFrame]:
        self.reads += spans.values()
        return await super().bars_between_many(timeframe, spans)


async def test_a_key_is_read_only_when_a_horizon_ends_at_a_closed_bar(clean_db: Database) -> None:
    store = _CountingStore((await store_bars(clean_db, SYMBOL, START, 100)).db)
    tracker = QualityTracker()
    tracker.record([make_prediction(START), make_prediction(START + FIVE_MIN)])
    # Another symbol with nothing stored: reading it would fail the pass.
    tracker.record([make_prediction(START, "NOBARSUSD")])
    for _ in range(3):  # the wall clock (years after these bars) says nothing
        assert await tracker.resolve(store) == 0
    assert store.reads == []
    assert tracker.fetches == 0

    # Bar 6 closes: the first prediction's scalping horizon (6 bars) ends there.
    tracker.record([make_prediction(START + 6 * FIVE_MIN)])
    assert await tracker.resolve(store) == 1
    assert store.reads == [(START + FIVE_MIN, START + 7 * FIVE_MIN)]
    for _ in range(3):  # no bar closed since
        assert await tracker.resolve(store) == 0
    assert len(store.reads) == 1

    # Bar 7: the second prediction's scalping; only the new bar is read.
    tracker.record([make_prediction(START + 7 * FIVE_MIN)])
    assert await tracker.resolve(store) == 1
    assert store.reads[1:] == [(START + 7 * FIVE_MIN, START + 8 * FIVE_MIN)]
    assert tracker.fetches == len(store.reads) == 2
    assert resolved_counts(tracker.report()) == {"scalping": 2}


async def test_a_resampled_bucket_is_not_read_until_it_has_closed(clean_db: Database) -> None:
    """15m over stored 5m bars: the scalping horizon (2 buckets) of the 00:00 prediction ends
    with the 00:30 bucket, whose last 5m bar (00:40) reaches 3 ATR up, outside its interval."""
    store = await store_bars(clean_db, SYMBOL, START, 8)  # 00:00 to 00:35
    spec = spec_for(Timeframe.M15)
    tracker = QualityTracker()
    tracker.record([make_prediction(START + k * 3 * FIVE_MIN, spec=spec) for k in range(2)])
    # The 00:30 bucket is forming (two of its three bars are in); the wall clock is long past it.
    assert await tracker.resolve(store, now=datetime.now(tz=START.tzinfo)) == 0
    assert tracker.fetches == 0

    await store_bars(clean_db, SYMBOL, START + 8 * FIVE_MIN, 1, high=103.0)  # 00:40 lands
    tracker.record([make_prediction(START + 6 * FIVE_MIN, spec=spec)])  # the 00:30 bucket closed
    assert await tracker.resolve(store) == 1
    ((entry),) = tracker.report()
    (scalping,) = entry.horizons
    assert (entry.timeframe, scalping.horizon, scalping.resolved) == ("15m", "scalping", 1)
    assert scalping.coverage_high == 0.0  # up 3 ATR: outside [0.5, 1.5] (1 ATR if cut short)


async def test_outcomes_of_historical_bars_are_counted_in_redis(
    clean_db: Database, redis_flushed: str
) -> None:
    """A replay of 2019 bars: outcomes are counted, not taken for stale (the wall clock only
    measures how long an outcome waited unsent)."""
    start = pd.Timestamp("2019-06-03 00:00", tz="UTC")
    store = await store_bars(clean_db, "HISTUSD", start, 100)
    redis = Redis.from_url(redis_flushed)
    try:
        tracker = QualityTracker(redis, namespace=NAMESPACE)  # claims live 3 h
        bars = (start, start + FIVE_MIN, start + timedelta(hours=5))
        tracker.record([make_prediction(bar, "HISTUSD") for bar in bars])
        assert await tracker.resolve(store) == 4  # scalping and intraday of the first two
        assert (tracker.shared.counted, tracker.shared.stale) == (4, 0)
        totals = await redis.hgetall(f"{NAMESPACE}:quality:totals:5m:v7")
        assert (totals[b"scalping:resolved"], totals[b"intraday:resolved"]) == (b"2", b"2")
        assert totals[b"trades"] == b"2"
        (entry,) = tracker.report()
        assert entry.source == "redis"
        assert resolved_counts([entry]) == {"scalping": 2, "intraday": 2}
    finally:
        await redis.aclose()
