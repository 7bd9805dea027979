"""When a market trades, derived from its own bars: the weekly slots its bars open in.

A symbol's stored bars say which bar-open times of the week it trades (24/7 crypto, 24/5 FX, an
exchange session with a lunch break, ...): a slot counts as open when bars opened in it in at
least OPEN_SHARE of the weeks observed, so a holiday does not close a slot and a stray bar does not
open one. Horizons in bars then end at the close of the h-th *trading* bar: the night, the weekend
and the break are skipped, as the bar-count targets skip them.
"""

from __future__ import annotations

import bisect
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pandas as pd

from orchestrator.marketdata.timeframes import Timeframe

WEEK_MINUTES = 7 * 24 * 60
OPEN_SHARE = 0.25
_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)


class TradingWeek(msgspec.Struct, frozen=True):
    """The bar-open times of a week a market trades at one timeframe, as minutes from Monday
    00:00 UTC (sorted)."""

    timeframe: str
    open_minutes: list[int]

    @property
    def bars_per_week(self) -> int:
        return len(self.open_minutes)

    @property
    def always_open(self) -> bool:
        return self.bars_per_week * Timeframe(self.timeframe).seconds >= WEEK_MINUTES * 60

    def bar_close(self, bar_open: datetime, bars: int) -> datetime:
        """Close time of the bar `bars` trading bars after the bar opening at `bar_open` (UTC)."""
        tf = Timeframe(self.timeframe)
        step = timedelta(seconds=tf.seconds)
        if tf.calendar_aligned or not self.open_minutes:
            return tf.advance(bar_open, bars) + step
        moment = bar_open if bar_open.tzinfo else bar_open.replace(tzinfo=UTC)
        weeks, minute = divmod(int((moment - _MONDAY).total_seconds() // 60), WEEK_MINUTES)
        slots = self.open_minutes
        index = bisect.bisect_right(slots, minute) - 1 + bars  # this bar's slot, then onwards
        extra_weeks, position = divmod(index, len(slots))
        opened = _MONDAY + timedelta(weeks=weeks + extra_weeks, minutes=slots[position])
        return opened + step


def infer_week(index: pd.DatetimeIndex, timeframe: Timeframe) -> TradingWeek:
    """The TradingWeek of bars opening at `index` (UTC)."""
    if len(index) == 0:
        return TradingWeek(timeframe.value, [])
    utc = index.tz_convert("UTC") if index.tz is not None else index.tz_localize("UTC")
    minutes = (utc.asi8 // 60_000_000_000) - int(_MONDAY.timestamp()) // 60
    weeks = minutes // WEEK_MINUTES
    slot = minutes % WEEK_MINUTES
    observed = max(1, int(weeks.max() - weeks.min()) + 1)
    unique_slots, counts = np.unique(
        np.unique(np.stack([weeks, slot], axis=1), axis=0)[:, 1], return_counts=True
    )
    need = max(1, int(np.ceil(OPEN_SHARE * observed)) if observed > 1 else 1)
    return TradingWeek(timeframe.value, sorted(int(s) for s in unique_slots[counts >= need]))
