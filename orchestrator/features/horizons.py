"""Prediction horizons as wall-clock durations, turned into bar counts per timeframe.

| horizon  | duration | 5m bars | 15m bars | 1h bars |
|----------|----------|---------|----------|---------|
| scalping | 30 min   | 6       | 2        | 1       |
| intraday | 4 h      | 48      | 16       | 4       |
| swing    | 1 day    | 288     | 96       | 24      |
| position | 5 days   | 1440    | 480      | 120     |
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
        return max(1, self.seconds // timeframe.seconds)


_SECONDS = {
    Horizon.SCALPING: 30 * 60,
    Horizon.INTRADAY: 4 * 3600,
    Horizon.SWING: 24 * 3600,
    Horizon.POSITION: 5 * 24 * 3600,
}
HORIZONS: tuple[Horizon, ...] = tuple(Horizon)
