"""Timeframes and the allow-list patterns every symbol/timeframe passes before reaching SQL."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from enum import StrEnum

SYMBOL_PATTERN = re.compile(r"^[A-Z0-9][A-Z0-9._-]{0,19}$")


class Timeframe(StrEnum):
    M1 = "1m"
    M5 = "5m"
    M15 = "15m"
    M30 = "30m"
    H1 = "1h"
    H4 = "4h"
    D1 = "1d"

    @property
    def seconds(self) -> int:
        return _SECONDS[self]

    @property
    def pandas_freq(self) -> str:
        return _PANDAS_FREQ[self]


_SECONDS = {
    Timeframe.M1: 60,
    Timeframe.M5: 300,
    Timeframe.M15: 900,
    Timeframe.M30: 1800,
    Timeframe.H1: 3600,
    Timeframe.H4: 14400,
    Timeframe.D1: 86400,
}
_PANDAS_FREQ = {
    Timeframe.M1: "1min",
    Timeframe.M5: "5min",
    Timeframe.M15: "15min",
    Timeframe.M30: "30min",
    Timeframe.H1: "1h",
    Timeframe.H4: "4h",
    Timeframe.D1: "1D",
}
VALID_TIMEFRAMES = ", ".join(tf.value for tf in Timeframe)


class InvalidSymbolError(ValueError):
    """A symbol that fails the allow-list pattern (never reaches SQL)."""


class InvalidTimeframeError(ValueError):
    """A timeframe string that is not one of the supported ones."""


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
    return target.seconds >= base.seconds and target.seconds % base.seconds == 0


def newest_closed(newest_stored: datetime, stored: Timeframe, timeframe: Timeframe) -> datetime:
    """Open time of the newest *closed* `timeframe` bar when the newest stored bar (at `stored`)
    opens at `newest_stored`: a resampled bucket closes when the bar in its last slot has landed;
    a forming bucket does not count. Buckets are anchored at the Unix epoch (see resample.py)."""
    if stored == timeframe:
        return newest_stored
    epoch = datetime(1970, 1, 1, tzinfo=newest_stored.tzinfo or UTC)
    offset_s = (newest_stored - epoch).total_seconds()
    bucket = epoch + timedelta(seconds=offset_s - offset_s % timeframe.seconds)
    step = timedelta(seconds=timeframe.seconds)
    closed = newest_stored + timedelta(seconds=stored.seconds) >= bucket + step
    return bucket if closed else bucket - step
