"""The series index: the newest bar only moves forward, the stored timeframe is remembered once
the poller names it, and a revision counts as a change once."""

from __future__ import annotations

from datetime import UTC, datetime

from orchestrator.inference.series import SeriesIndex
from orchestrator.marketdata.timeframes import Timeframe

KEY = ("ESDEMO", Timeframe.H1)
EARLY, LATE = datetime(2026, 3, 2, 14, tzinfo=UTC), datetime(2026, 3, 2, 15, tzinfo=UTC)


def test_the_newest_bar_only_moves_forward() -> None:
    index = SeriesIndex()
    assert index.bar_closed(KEY, LATE) is None
    assert index.bar_closed(KEY, EARLY) == LATE  # an older report (a late event) changes nothing
    assert index.newest(KEY) == LATE


def test_the_stored_timeframe_and_its_revision_belong_to_the_key() -> None:
    index = SeriesIndex()
    index.bar_closed(KEY, LATE)
    assert index.source(KEY) is None  # a request saw the bar; the poller has not named its store
    assert index.revision(KEY) == 0
    index.bar_closed(KEY, LATE, Timeframe.M5)  # the poller: 1h computed from stored 5m bars
    assert index.source(KEY) == Timeframe.M5
    assert index.revised(("ESDEMO", Timeframe.M5), 3)
    assert not index.revised(("ESDEMO", Timeframe.M5), 3)
    assert index.revision(KEY) == 3
    assert index.revision(("ESDEMO", Timeframe.M5)) == 3
    assert index.revision(("OTHER", Timeframe.H1)) == 0
