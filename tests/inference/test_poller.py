"""When the bar-close poller scans, which keys a scan schedules, and when it tries a failed key
again (pure logic, no servers)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from orchestrator.features.online import NotEnoughHistoryError
from orchestrator.inference.client import ModelServiceUnavailableError
from orchestrator.inference.poller import (
    CLOCK_MARGIN_S,
    FULL_SCAN_BUSY_S,
    FULL_SCAN_S,
    RETRY_S,
    SAME_SECOND_RESCAN_S,
    BarClosePoller,
    _Failure,
    scan_due,
)
from orchestrator.inference.prediction import FeatureKey
from orchestrator.inference.series import SeriesIndex
from orchestrator.marketdata.store import UnknownSymbolError
from orchestrator.marketdata.timeframes import Timeframe

BAR = datetime(2025, 6, 2, 12, 0, tzinfo=UTC)
KEY = ("BTCUSD", Timeframe.M15)


def test_too_little_history_waits_until_the_missing_bars_can_have_landed() -> None:
    failure = _Failure.of(NotEnoughHistoryError(have=600, need=664), KEY, BAR)
    now = time.monotonic()
    assert failure.skips(BAR, now + 3600)  # the same bar never again
    assert failure.skips(BAR + timedelta(minutes=15 * 63), now)  # 63 of the 64 missing bars
    assert not failure.skips(BAR + timedelta(minutes=15 * 64), now)
    # Before the 15m target is even computed, the stored series' newest 5m bar says the same:
    assert failure.too_young(BAR + timedelta(minutes=15 * 64) - timedelta(minutes=5))
    assert not failure.too_young(BAR + timedelta(minutes=15 * 64))
    assert not _Failure.of(ModelServiceUnavailableError("away"), KEY, BAR).too_young(BAR)


def test_a_dependency_that_was_away_is_retried_after_a_pause_or_at_the_next_bar() -> None:
    failure = _Failure.of(ModelServiceUnavailableError("triton down"), KEY, BAR)
    now = time.monotonic()
    assert failure.skips(BAR, now)
    assert not failure.skips(BAR, now + RETRY_S + 0.1)
    assert not failure.skips(BAR + timedelta(minutes=15), now)


def test_an_unknown_symbol_is_tried_again_only_for_a_new_bar() -> None:
    failure = _Failure.of(UnknownSymbolError("NOPEUSD"), KEY, BAR)
    assert failure.skips(BAR, time.monotonic() + 3600)
    assert not failure.skips(BAR + timedelta(minutes=15), time.monotonic())


def test_a_commit_is_scanned_at_once_and_its_second_again_until_a_scan_starts_after_it() -> None:
    """UPDATE_TIME has whole seconds: a second commit in the second already seen moves nothing,
    so that second is rescanned every SAME_SECOND_RESCAN_S (not every poll) until one scan has
    started after it ended; then nothing until the next commit or FULL_SCAN_S."""
    second = datetime(2025, 6, 2, 12, 0, 0, tzinfo=UTC)
    over = second.timestamp() + 1.0 + CLOCK_MARGIN_S  # wall clock when the second is surely over
    mono = 1000.0  # monotonic clock of the last scan
    assert scan_due(second, None, 0.0, mono, second.timestamp() + 0.3, mono)  # a new commit
    during = second.timestamp() + 0.4
    assert not scan_due(second, second, during - 0.05, mono, during, mono + 0.05)  # next poll
    assert scan_due(second, second, during - 0.2, mono, during, mono + SAME_SECOND_RESCAN_S)
    assert scan_due(second, second, over - 0.1, mono, over, mono + 0.1)  # the second is over
    assert not scan_due(second, second, over, mono, over + 2.0, mono + 2.0)  # covered
    assert scan_due(second, second, over, mono, over + 9.0, mono + FULL_SCAN_S)
    assert scan_due(None, None, over, mono, over, mono + 0.05)  # no UPDATE_TIME: every poll


def test_a_backlogged_engine_rescans_a_seen_second_once_it_is_over() -> None:
    """With more than a sweep of keys queued, what a rescan finds would wait anyway: the second
    is scanned again once it is over, not every SAME_SECOND_RESCAN_S; a new commit still is."""
    second = datetime(2025, 6, 2, 12, 0, 0, tzinfo=UTC)
    over = second.timestamp() + 1.0 + CLOCK_MARGIN_S
    mono = 1000.0
    during = second.timestamp() + 0.4
    assert scan_due(second, None, 0.0, mono, during, mono + 0.05, busy=True)  # a new commit
    assert not scan_due(second, second, during - 0.2, mono, during, mono + 0.5, busy=True)
    assert scan_due(second, second, over - 0.1, mono, over, mono + 0.6, busy=True)
    assert not scan_due(second, second, over, mono, over + 2.0, mono + 2.0, busy=True)
    # The scan whatever UPDATE_TIME says waits longer too.
    assert not scan_due(second, second, over, mono, over + 9.0, mono + FULL_SCAN_S, busy=True)
    assert scan_due(second, second, over, mono, over + 9.0, mono + FULL_SCAN_BUSY_S, busy=True)


class _Engine:
    """What the poller's scheduling reads of the engine, recording the keys it is asked for."""

    def __init__(self) -> None:
        self.series = SeriesIndex()
        self.latest: dict[FeatureKey, object] = {}
        self.asked: dict[FeatureKey, datetime] = {}

    def is_watched(self, key: FeatureKey) -> bool:
        return False

    def request(
        self, key: FeatureKey, target: datetime, urgent: bool = False
    ) -> tuple[asyncio.Future[object], bool]:
        self.asked[key] = target
        return asyncio.get_running_loop().create_future(), True


async def test_a_stored_series_feeds_its_timeframe_and_the_coarser_ones_not_stored_apart() -> None:
    """5m bars feed the 5m, 15m and 1h keys, except where the symbol stores 1h bars itself:
    then its 1h key follows its own series, and a series stored at 1h feeds no finer key."""
    engine = _Engine()
    poller = BarClosePoller(engine, None, None, (), 0.05)  # type: ignore[arg-type]
    newest_5m = datetime(2025, 6, 2, 12, 55, tzinfo=UTC)  # closes the 12:45 15m and 12h bars
    newest_1h = datetime(2025, 6, 2, 11, 0, tzinfo=UTC)
    marks = {
        ("AAA", Timeframe.M5): newest_5m,
        ("BBB", Timeframe.M5): newest_5m,
        ("BBB", Timeframe.H1): newest_1h,
        ("CCC", Timeframe.H1): newest_1h,
    }
    served = (Timeframe.M5, Timeframe.M15, Timeframe.H1)
    poller._schedule(marks, set(marks), served, time.monotonic())
    m5, m15, h1 = served
    assert engine.asked == {
        ("AAA", m5): newest_5m,
        ("AAA", m15): datetime(2025, 6, 2, 12, 45, tzinfo=UTC),
        ("AAA", h1): datetime(2025, 6, 2, 12, 0, tzinfo=UTC),
        ("BBB", m5): newest_5m,
        ("BBB", m15): datetime(2025, 6, 2, 12, 45, tzinfo=UTC),
        ("BBB", h1): newest_1h,
        ("CCC", h1): newest_1h,
    }
