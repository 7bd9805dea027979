"""When a market trades, derived from its own bars: the weekly slots its bars open in.

A symbol's stored bars say which bar-open times of the week it trades (24/7 crypto, 24/5 FX, an
exchange session with a lunch break, ...): a slot counts as open when bars opened in it in at
least OPEN_SHARE of the weeks observed, so a holiday does not close a slot and a stray bar does not
open one. Horizons in bars then end at the close of the h-th *trading* bar: the night, the weekend
and the break are skipped, as the bar-count targets skip them.

A *session* is a stretch of trading between closures of at least SESSION_CLOSURE_S (a lunch
break or a one-hour maintenance halt stays inside it); a stretch that runs for days (24/7, 24/5,
23/5 futures) counts one session per 24 hours it spans. `session_bars` is the week's bars over
its sessions: 78 five-minute bars for a 6.5-hour exchange day, 288 around the clock.
"""

from __future__ import annotations

import bisect
import functools
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import pandas as pd

from orchestrator.marketdata.timeframes import Timeframe

WEEK_MINUTES = 7 * 24 * 60
OPEN_SHARE = 0.25
SESSION_CLOSURE_S = 3 * 3600  # shorter closures (lunch, a maintenance halt) stay in a session
DAY_MINUTES = 24 * 60
_MONDAY = datetime(1970, 1, 5, tzinfo=UTC)


class TradingWeek(msgspec.Struct, frozen=True, dict=True):
    """The bar-open times of a week a market trades at one timeframe, as minutes from Monday
    00:00 UTC (sorted). What is derived from them is computed once per week object (`dict=True`
    lets functools.cached_property keep it): a week serves every bar and answer of its symbol."""

    timeframe: str
    open_minutes: list[int]

    @property
    def bars_per_week(self) -> int:
        return len(self.open_minutes)

    @property
    def always_open(self) -> bool:
        return self.bars_per_week * Timeframe(self.timeframe).seconds >= WEEK_MINUTES * 60

    def at(self, timeframe: Timeframe) -> TradingWeek:
        """This week at a coarser (or the same) timeframe: a coarse bar opens wherever one of
        its finer bars traded (both grids start at Monday 00:00 UTC)."""
        if timeframe.value == self.timeframe:
            return self
        step = timeframe.seconds // 60
        coarse = TradingWeek(timeframe.value, sorted({m - m % step for m in self.open_minutes}))
        return shared_week(coarse)

    @property
    def sessions_per_week(self) -> int:
        """Trading sessions in the week (0 for an empty week)."""
        return len(self._sessions)

    @functools.cached_property
    def session_bars(self) -> int:
        """Bars of an average session (a day of bars for a market that never closes for long);
        0 for an empty week."""
        sessions = self.sessions_per_week
        return round(self.bars_per_week / sessions) if sessions else 0

    @functools.cached_property
    def _sessions(self) -> list[int]:
        """Length in minutes of each session of the week (a multi-day stretch split in days);
        a walk over every slot of the week (0.16 ms for 24/7 5m bars), so computed once."""
        slots = self.open_minutes
        if not slots:
            return []
        step = Timeframe(self.timeframe).seconds // 60
        following = [*slots[1:], slots[0] + WEEK_MINUTES]
        closes = {
            i
            for i, (slot, nxt) in enumerate(zip(slots, following, strict=True))
            if nxt - slot - step >= SESSION_CLOSURE_S // 60
        }
        if not closes:  # never closed for long: a session per day
            return [DAY_MINUTES] * 7
        # Walk the week from the first open after a closure; a stretch ends at each closure.
        begin, count = min(closes) + 1, len(slots)
        opens = [
            slots[(begin + i) % count] + WEEK_MINUTES * ((begin + i) // count) for i in range(count)
        ]
        spans, start = [], opens[0]
        for i, opened in enumerate(opens):
            if (begin + i) % count in closes:
                length = opened + step - start
                days = max(1, round(length / DAY_MINUTES))
                spans += [length // days] * days
                if i + 1 < count:
                    start = opens[i + 1]
        return spans

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
    observed = max(1, int(weeks.max() - weeks.min()) + 1)
    # Each distinct minute is one (week, slot) pair; count the weeks each slot traded in.
    unique_slots, counts = np.unique(np.unique(minutes) % WEEK_MINUTES, return_counts=True)
    need = max(1, int(np.ceil(OPEN_SHARE * observed)) if observed > 1 else 1)
    return shared_week(TradingWeek(timeframe.value, unique_slots[counts >= need].tolist()))


_SHARED_WEEKS: dict[tuple[str, tuple[int, ...]], TradingWeek] = {}
MAX_SHARED_WEEKS = 4096  # distinct calendars remembered; far more than markets trade on


def shared_week(week: TradingWeek) -> TradingWeek:
    """One object per distinct week: thousands of symbols trade on a handful of calendars, and
    a 5m week is 2,016 minutes (~70 KB of Python ints) plus what is derived from it, computed
    once per object. Held by every feature state, so sharing it is most of a state's memory."""
    key = (week.timeframe, tuple(week.open_minutes))
    known = _SHARED_WEEKS.get(key)
    if known is None:
        if len(_SHARED_WEEKS) >= MAX_SHARED_WEEKS:
            _SHARED_WEEKS.clear()
        known = _SHARED_WEEKS[key] = week
    return known
