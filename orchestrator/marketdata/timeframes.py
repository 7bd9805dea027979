"""Timeframes and the allow-list patterns every symbol/timeframe passes before reaching SQL.

Intraday and daily bars sit on a fixed grid anchored at the Unix epoch (4h bars open at
00/04/08/... UTC). Weekly and monthly bars are calendar-aligned instead: weeks open on Monday
00:00 UTC and months on the 1st 00:00 UTC, so a month is 28 to 31 days long. Boundaries
therefore come from `floor` / `next_open`, never from `seconds` arithmetic.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING

from orchestrator.errors import BadParameterError

if TYPE_CHECKING:  # pandas loads on first use: the command line's parser imports this module
    import pandas as pd

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,19}$")
DAY_S = 86_400
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Timeframe(StrEnum):
    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    M30 = "30m"
    H1 = "1h"
    H4 = "4h"
    D1 = "1d"
    W1 = "1w"
    MO1 = "1mo"

    @property
    def seconds(self) -> int:
        """Length of a bar; for 1mo the longest month (31 days). Exact for every other
        timeframe; use it for sizes and spans, and `floor`/`next_open` for boundaries."""
        return _SECONDS[self]

    @property
    def pandas_freq(self) -> str:
        """The pandas frequency of the bar grid ("W-MON" and "MS" for the calendar ones)."""
        return _PANDAS_FREQ[self]

    @property
    def calendar_aligned(self) -> bool:
        """Weekly and monthly bars follow the calendar, not the epoch grid."""
        return self in (Timeframe.W1, Timeframe.MO1)

    def floor_index(self, moments: pd.DatetimeIndex) -> pd.DatetimeIndex:
        """Open time of the bar holding each moment (UTC)."""
        import pandas as pd

        day = moments.normalize()
        if self is Timeframe.W1:
            return day - pd.to_timedelta(day.dayofweek, unit="D")
        if self is Timeframe.MO1:
            return day - pd.to_timedelta(day.day - 1, unit="D")
        return moments.floor(self.pandas_freq)

    def floor(self, moment: datetime) -> datetime:
        """Open time of the bar holding `moment` (zone-less moments are taken as UTC and stay
        zone-less)."""
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
        if self.calendar_aligned:
            import pandas as pd

            stamp = pd.Timestamp(aware)
            floored = self.floor_index(pd.DatetimeIndex([stamp]))[0]
            result: datetime = floored.tz_convert(stamp.tzinfo).to_pydatetime()
        else:
            # The epoch grid in integer arithmetic: the poller asks this of every symbol and
            # served timeframe after each commit, and a pandas round trip cost ~40 µs a call.
            step = timedelta(seconds=self.seconds)
            result = (_EPOCH + ((aware - _EPOCH) // step) * step).astimezone(aware.tzinfo)
        return result if moment.tzinfo is not None else result.replace(tzinfo=None)

    def advance(self, bar_open: datetime, bars: int = 1) -> datetime:
        """Open time `bars` bars after (or before, if negative) the bar opening at `bar_open`."""
        if self.calendar_aligned:
            import pandas as pd
            from pandas.tseries.frequencies import to_offset

            offset = to_offset(self.pandas_freq)
            calendar: datetime = (pd.Timestamp(bar_open) + bars * offset).to_pydatetime()
            return calendar
        shifted = bar_open + timedelta(seconds=self.seconds * bars)
        to_datetime = getattr(shifted, "to_pydatetime", None)  # a pandas Timestamp came in
        return to_datetime() if to_datetime is not None else shifted

    def next_open(self, bar_open: datetime) -> datetime:
        """When the bar opening at `bar_open` closes (and the next one opens)."""
        return self.advance(bar_open, 1)


_SECONDS = {
    Timeframe.M1: 60,
    Timeframe.M5: 300,
    Timeframe.M15: 900,
    Timeframe.M30: 1800,
    Timeframe.H1: 3600,
    Timeframe.H4: 14400,
    Timeframe.D1: DAY_S,
    Timeframe.W1: 7 * DAY_S,
    Timeframe.MO1: 31 * DAY_S,
}
_PANDAS_FREQ = {
    Timeframe.M1: "1min",
    Timeframe.M5: "5min",
    Timeframe.M15: "15min",
    Timeframe.M30: "30min",
    Timeframe.H1: "1h",
    Timeframe.H4: "4h",
    Timeframe.D1: "1D",
    Timeframe.W1: "W-MON",
    Timeframe.MO1: "MS",
}
# The spacing of consecutive monthly bars: the shortest and the longest month.
MONTH_SPACING_S = (28 * DAY_S, 31 * DAY_S)
VALID_TIMEFRAMES = ", ".join(tf.value for tf in Timeframe)


class InvalidSymbolError(BadParameterError):
    """A symbol that fails the allow-list pattern (never reaches SQL; the API answers 400)."""

    field = "symbol"


class InvalidTimeframeError(BadParameterError):
    """A timeframe string that is not one of the supported ones (400)."""

    field = "timeframe"


def parse_symbol(raw: str) -> str:
    symbol = raw.strip().upper()
    if not SYMBOL_PATTERN.fullmatch(symbol):
        raise InvalidSymbolError(
            f"invalid symbol {raw!r}: use 1-20 characters A-Z, 0-9, '.', '_' or '-' (e.g. BTCUSD)"
        )
    return symbol


def parse_timeframe(raw: str) -> Timeframe:
    try:
        return Timeframe(raw.strip().lower())
    except ValueError:
        raise InvalidTimeframeError(
            f"invalid timeframe {raw!r}: use one of {VALID_TIMEFRAMES}"
        ) from None


def is_multiple(target: Timeframe, base: Timeframe) -> bool:
    """Whether `target` bars can be built from whole `base` bars. Every timeframe up to 1d
    divides a day and its grid meets midnight, so weeks and months are whole multiples of them
    (31 days is a multiple of each); a month is no multiple of a week."""
    return target.seconds >= base.seconds and target.seconds % base.seconds == 0


def newest_closed(newest_stored: datetime, stored: Timeframe, timeframe: Timeframe) -> datetime:
    """Open time of the newest *closed* `timeframe` bar when the newest stored bar (at `stored`)
    opens at `newest_stored`: a resampled bucket closes when the bar in its last slot has landed;
    a forming bucket does not count (see resample.py for the bucket boundaries)."""
    if stored == timeframe:
        return newest_stored
    bucket = timeframe.floor(newest_stored)
    closed = stored.next_open(newest_stored) >= timeframe.next_open(bucket)
    return bucket if closed else timeframe.advance(bucket, -1)
