"""What the bar-close engine knows about every series, in one place.

Three sources tell it something: the poller's scans (a newer closed bar, the stored timeframe a key
is computed from, a stored series rewritten), requests that found a bar the poller has not seen
yet, and other replicas' bar-close events. They report to this index; the sweeps, the feature
states, the request path and the stream read it. Nothing else keeps a copy.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime

from orchestrator.inference.prediction import FeatureKey
from orchestrator.marketdata.timeframes import Timeframe

StoredSeries = tuple[str, Timeframe]  # (symbol, timeframe the bars are stored at)


class SeriesIndex:
    def __init__(self) -> None:
        self._newest: dict[FeatureKey, datetime] = {}
        self._source: dict[FeatureKey, Timeframe] = {}
        self._revisions: dict[StoredSeries, int] = {}
        self._per_timeframe: Counter[Timeframe] = Counter()

    # --- events -------------------------------------------------------------------------------
    def bar_closed(
        self, key: FeatureKey, bar_time: datetime, stored: Timeframe | None = None
    ) -> datetime | None:
        """`key`'s closed bar `bar_time` exists (computed from the bars stored at `stored`, where
        the teller knows it). Returns the newest bar known before, None for a new key."""
        previous = self._newest.get(key)
        if previous is None:
            self._per_timeframe[key[1]] += 1
        if previous is None or bar_time > previous:
            self._newest[key] = bar_time
        if stored is not None:
            self._source[key] = stored
        return previous

    def revised(self, series: StoredSeries, revision: int) -> bool:
        """The stored series' history is at `revision` (bar_revisions); True when that is a
        change from what was known (a corrected or backfilled bar)."""
        if self._revisions.get(series) == revision:
            return False
        self._revisions[series] = revision
        return True

    # --- questions ----------------------------------------------------------------------------
    def newest(self, key: FeatureKey) -> datetime | None:
        """The newest closed bar known for `key` (None before anyone saw one)."""
        return self._newest.get(key)

    def served(self, timeframe: Timeframe) -> int:
        """How many series are known on `timeframe` (the universe live quality scales by)."""
        return self._per_timeframe[timeframe]

    def source(self, key: FeatureKey) -> Timeframe | None:
        """The timeframe `key`'s bars are stored at, once the poller has seen them."""
        return self._source.get(key)

    def revision(self, key: FeatureKey) -> int:
        """The revision of the stored series behind `key` (0 before any correction)."""
        return self._revisions.get((key[0], self._source.get(key, key[1])), 0)
