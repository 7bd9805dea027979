"""Prediction horizons as durations, turned into bar counts per timeframe.

| horizon  | duration | 5m bars | 15m bars | 1h bars | 1d bars |
|----------|----------|---------|----------|---------|---------|
| scalping | 30 min   | 6       | 2        | 1       | 1       |
| intraday | 4 h      | 48      | 16       | 4       | 2       |
| swing    | 1 day    | 288     | 96       | 24      | 5       |
| position | 5 days   | 1440    | 480      | 120     | 20      |

Bars are counted over the bars a market trades (the targets read the next h stored bars), so a
night or a weekend inside a horizon is skipped. At daily bars and longer the durations would
collapse (30 minutes, 4 hours and a day are all the next bar), so those timeframes get horizons
of their own: the next session, two sessions, a week and a month of sessions (DAILY_BARS).
"""

from __future__ import annotations

from enum import StrEnum

from orchestrator.marketdata.timeframes import Timeframe


class Horizon(StrEnum):
    SCALPING = "scalping"
    INTRADAY = "intraday"
    SWING = "swing"
    POSITION = "position"

    @property
    def seconds(self) -> int:
        return _SECONDS[self]

    def bars(self, timeframe: Timeframe) -> int:
        if timeframe.seconds >= 86_400:
            return DAILY_BARS[self]
        return max(1, self.seconds // timeframe.seconds)

    def describe(self, timeframe: Timeframe) -> str:
        """The horizon's duration at this timeframe, in words."""
        if timeframe.seconds >= 86_400:
            count = DAILY_BARS[self]
            return f"{count} trading {'bar' if count == 1 else 'bars'} ({timeframe.value})"
        return _WORDS[self]


_SECONDS = {
    Horizon.SCALPING: 30 * 60,
    Horizon.INTRADAY: 4 * 3600,
    Horizon.SWING: 24 * 3600,
    Horizon.POSITION: 5 * 24 * 3600,
}
HORIZONS: tuple[Horizon, ...] = tuple(Horizon)
# Daily and longer bars: distinct horizons instead of three that are all the next bar.
DAILY_BARS = {Horizon.SCALPING: 1, Horizon.INTRADAY: 2, Horizon.SWING: 5, Horizon.POSITION: 20}
_WORDS = {  # counted in the bars the market trades (24 h of bars per day)
    Horizon.SCALPING: "30 minutes of bars",
    Horizon.INTRADAY: "4 hours of bars",
    Horizon.SWING: "24 hours of bars",
    Horizon.POSITION: "120 hours of bars",
}
