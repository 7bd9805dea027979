"""Prediction horizons in trading time, turned into bar counts per timeframe and calendar.

| horizon  | trading duration  | 5m, 24/7 | 5m, 6.5 h session | 1h, 24/7 | 1d bars |
|----------|-------------------|----------|-------------------|----------|---------|
| scalping | 30 minutes        | 6        | 6                 | 1        | 1       |
| intraday | 4 hours           | 48       | 48                | 4        | 2       |
| swing    | one session       | 288      | 78                | 24       | 5       |
| position | five sessions     | 1440     | 390               | 120      | 20      |

Bars are counted over the bars a market trades (the targets read the next h stored bars), so a
night or a weekend inside a horizon is skipped. A session is the market's trading day, derived
from its own bars (marketdata/sessions.py): 24 hours of bars for a market that never closes for
long, 78 five-minute bars for a 14:30-21:00 exchange. Where horizons would collapse they are kept
apart, and the description says what they became: at daily bars (30 minutes, 4 hours and a
session are all the next bar) the horizons are the next session, two sessions, a week and a month
of sessions (DAILY_BARS); on a market whose session is no longer than 4 hours, intraday is half a
session; on coarse bars each horizon is at least one bar longer than the one before.
"""

from __future__ import annotations

from enum import StrEnum

from orchestrator.marketdata.sessions import TradingWeek
from orchestrator.marketdata.timeframes import DAY_S, Timeframe


class Horizon(StrEnum):
    SCALPING = "scalping"
    INTRADAY = "intraday"
    SWING = "swing"
    POSITION = "position"

    def bars(self, timeframe: Timeframe, session_bars: int | None = None) -> int:
        """Bars of this horizon at `timeframe` on a market with `session_bars` bars a session
        (None: a market that trades around the clock)."""
        return horizon_bars(timeframe, session_bars)[HORIZONS.index(self)]

    def describe(self, timeframe: Timeframe, count: int, session_bars: int | None = None) -> str:
        """What `count` bars of this horizon span at this timeframe on a market with
        `session_bars` bars a session (None: around the clock), in words."""
        if timeframe.seconds >= DAY_S:
            return f"{count} trading {'bar' if count == 1 else 'bars'} ({timeframe.value})"
        session = session_bars or around_the_clock(timeframe)
        hours = _hours(count * timeframe.seconds)
        if self in (Horizon.SWING, Horizon.POSITION):
            sessions = count / session
            if count == session:
                amount = "one session"
            elif sessions == round(sessions):
                amount = f"{round(sessions)} sessions"
            else:
                amount = f"{sessions:.1f} sessions"
            return f"{amount} ({hours} of trading)"
        if self is Horizon.INTRADAY and count * timeframe.seconds < _NOMINAL_S[self]:
            return f"{hours} of trading (half a session: sessions are short)"
        return f"{hours} of trading"


HORIZONS: tuple[Horizon, ...] = tuple(Horizon)
_NOMINAL_S = {Horizon.SCALPING: 30 * 60, Horizon.INTRADAY: 4 * 3600}
SWING_SESSIONS = 1
POSITION_SESSIONS = 5
# Daily and longer bars: distinct horizons instead of three that are all the next bar.
DAILY_BARS = {Horizon.SCALPING: 1, Horizon.INTRADAY: 2, Horizon.SWING: 5, Horizon.POSITION: 20}


def around_the_clock(timeframe: Timeframe) -> int:
    """Bars in a 24-hour session at `timeframe` (at least 1)."""
    return max(1, DAY_S // timeframe.seconds)


def horizon_bars(timeframe: Timeframe, session_bars: int | None = None) -> list[int]:
    """Bars of each horizon (in HORIZONS order) at `timeframe` on a market with `session_bars`
    bars a session (None or 0: a market that trades around the clock); strictly increasing."""
    if timeframe.seconds >= DAY_S:
        return [DAILY_BARS[h] for h in HORIZONS]
    step = timeframe.seconds
    session = session_bars or around_the_clock(timeframe)
    scalping = max(1, _NOMINAL_S[Horizon.SCALPING] // step)
    intraday = max(1, _NOMINAL_S[Horizon.INTRADAY] // step)
    if intraday >= session:  # sessions of 4 hours or less: intraday is half of one
        intraday = session // 2
    counts = [scalping, intraday, SWING_SESSIONS * session, POSITION_SESSIONS * session]
    for k in range(1, len(counts)):
        counts[k] = max(counts[k], counts[k - 1] + 1)
    return counts


def week_horizon_bars(week: TradingWeek | None) -> list[int] | None:
    """Bars of each horizon on the market whose trading week is `week` (None when no bars told
    when it trades)."""
    if week is None or not week.open_minutes:
        return None
    return horizon_bars(Timeframe(week.timeframe), week.session_bars)


def _hours(seconds: int) -> str:
    if seconds < 3600:
        return f"{seconds // 60} minutes"
    hours = seconds / 3600
    return f"{hours:g} {'hour' if hours == 1 else 'hours'}"
