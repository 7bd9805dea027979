"""History from the store, and the parameter checks the market-data routes share.

Every parameter rule is declared in the OpenAPI document (pattern, enum, bounds, format) from the
same constants the checks below use, so the document and the 400 answers cannot disagree; the
checks stay ours so each 400 names the rule. Rules JSON Schema cannot state (`end` after `start`,
both or neither) are written in the parameters' descriptions.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import UTC, datetime
from typing import Annotated, Any

import msgspec
import pandas as pd
from litestar import Controller, Request, get
from litestar.datastructures import State
from litestar.openapi.spec import Example, OpenAPIType
from litestar.params import Parameter

from orchestrator.api.errors import MARKET_ERRORS, BadParameterError
from orchestrator.marketdata.store import BarStore, empty_bars
from orchestrator.marketdata.timeframes import (
    InvalidSymbolError,
    InvalidTimeframeError,
    Timeframe,
)

MAX_LIMIT = 10_000
STORED_TIMEFRAMES = tuple(
    tf.value for tf in Timeframe
)  # any of them, resampled from the stored one

# The store's SYMBOL_PATTERN in either case: symbols are upper-cased (btcusd is BTCUSD).
SYMBOL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,19}$"
SYMBOL_RULE = "1-20 characters A-Z, a-z, 0-9, '.', '_' or '-', starting with a letter or digit"
_SYMBOL = re.compile(SYMBOL_PATTERN)
# RFC 3339 date-time (JSON Schema's "date-time"): seconds and a UTC offset are required.
_DATE_TIME = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
# What the store can hold: bars are pandas timestamps (nanoseconds since 1970, ±292 years), so a
# range reaching beyond these instants is cut to them without losing a bar.
EARLIEST = datetime(1678, 1, 1, tzinfo=UTC)
LATEST = datetime(2262, 1, 1, tzinfo=UTC)


def declared(description: str, **rules: Any) -> Any:
    """A query/path parameter whose rules are only declared here; the handler checks them."""
    return Parameter(description=description, schema_extra=rules)


SymbolPath = Annotated[
    str,
    Parameter(
        description=f"Instrument symbol, {SYMBOL_RULE}; case-insensitive (btcusd is BTCUSD)",
        schema_extra={"pattern": SYMBOL_PATTERN},
        examples=[Example(summary="Bitcoin in US dollars (5m bars)", value="BTCUSD")],
    ),
]


def timeframe_query(choices: tuple[str, ...], detail: str) -> Any:
    return declared(f"Bar timeframe, one of {', '.join(choices)}; {detail}", enum=list(choices))


def limit_query(what: str) -> Any:
    return declared(f"How many {what}, 1 to {MAX_LIMIT}", minimum=1, maximum=MAX_LIMIT)


def date_time_query(description: str) -> Any:
    """An optional RFC 3339 date-time, declared as a string of format date-time (not nullable)."""
    return declared(description, one_of=None, type=OpenAPIType.STRING, format="date-time")


def reject_repeated_query(request: Request[Any, Any, Any]) -> None:
    """A parameter given twice is ambiguous (Litestar would keep the last one silently)."""
    counts = Counter(key for key, _ in request.query_params.multi_items())
    for key, count in counts.items():
        if count > 1:
            raise BadParameterError(key, f"{key} is given {count} times; give it once")


def checked_symbol(raw: str) -> str:
    if not _SYMBOL.fullmatch(raw):
        raise InvalidSymbolError(f"invalid symbol {raw!r}: use {SYMBOL_RULE} (e.g. BTCUSD)")
    return raw.upper()


def checked_timeframe(raw: str, choices: tuple[str, ...]) -> Timeframe:
    if raw not in choices:
        raise InvalidTimeframeError(f"invalid timeframe {raw!r}: use one of {', '.join(choices)}")
    return Timeframe(raw)


def checked_limit(limit: int) -> int:
    if not 1 <= limit <= MAX_LIMIT:
        raise BadParameterError("limit", f"limit must be between 1 and {MAX_LIMIT}, got {limit}")
    return limit


def checked_moment(field: str, raw: str) -> datetime:
    """An RFC 3339 date-time with its offset; microseconds are the finest unit kept."""
    problem = f"{field} must be an RFC 3339 date-time with an offset, e.g. 2025-01-31T00:00:00Z"
    if not _DATE_TIME.fullmatch(raw):
        raise BadParameterError(field, f"{problem}; got {raw!r}")
    try:
        return datetime.fromisoformat(raw.upper())
    except ValueError as exc:  # 2025-02-30, hour 24, an offset of 24 h or more
        raise BadParameterError(field, f"{problem}; {raw!r}: {exc}") from None


def _stored_range(start: datetime, end: datetime) -> tuple[datetime, datetime]:
    """[start, end) in UTC, cut to what the store can hold (may come out empty)."""

    def utc(moment: datetime) -> datetime:
        try:
            return moment.astimezone(UTC)
        except OverflowError:  # year 1 or 9999 moved across the edge of the calendar
            return EARLIEST if moment.year < EARLIEST.year else LATEST

    return max(utc(start), EARLIEST), min(utc(end), LATEST)


class Bar(msgspec.Struct):
    time: datetime
    open: float
    high: float
    low: float
    close: float
    volume: float


class HistoryResponse(msgspec.Struct):
    symbol: str
    timeframe: str
    bars: list[Bar]


class MarketController(Controller):
    path = "/api"
    tags = ["market data"]  # noqa: RUF012
    before_request = staticmethod(reject_repeated_query)

    @get(
        "/history/{symbol:str}",
        summary="OHLCV bars from the store (newest `limit`, or a range)",
        responses=MARKET_ERRORS,
    )
    async def history(
        self,
        state: State,
        symbol: SymbolPath,
        limit: Annotated[int, limit_query("bars (the newest, or the first of the range)")] = 500,
        timeframe: Annotated[
            str,
            timeframe_query(STORED_TIMEFRAMES, "coarser ones are resampled from the stored bars"),
        ] = "5m",
        start: Annotated[
            str | None,
            date_time_query(
                "Range start (inclusive), RFC 3339 with an offset; give `end` too, after it"
            ),
        ] = None,
        end: Annotated[
            str | None,
            date_time_query("Range end (exclusive), RFC 3339 with an offset; after `start`"),
        ] = None,
    ) -> HistoryResponse:
        sym, tf = checked_symbol(symbol), checked_timeframe(timeframe, STORED_TIMEFRAMES)
        count = checked_limit(limit)
        store = BarStore(await state.resources.database())
        if start is not None or end is not None:
            if start is None or end is None:
                raise BadParameterError(
                    "start" if start is None else "end",
                    "give both start and end (RFC 3339), or neither",
                )
            since, until = checked_moment("start", start), checked_moment("end", end)
            if until <= since:
                raise BadParameterError("end", "end must be after start")
            since, until = _stored_range(since, until)
            if since < until:
                frame = (await store.bars_between(sym, tf, since, until)).iloc[:count]
            else:  # wholly outside what the store can hold: no bars, but a 404 still applies
                await store.source_timeframe(sym, tf)
                frame = empty_bars()
        else:
            frame = await store.latest_bars(sym, tf, count)
        return HistoryResponse(sym, tf.value, _bars(frame))


def _bars(frame: pd.DataFrame) -> list[Bar]:
    return [
        Bar(ts.to_pydatetime(), *row)
        for ts, row in zip(
            frame.index,
            frame[["open", "high", "low", "close", "volume"]].to_numpy().tolist(),
            strict=True,
        )
    ]
