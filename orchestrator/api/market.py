"""History from the store, and the parameter checks the market-data routes share.

Every parameter rule is declared in the OpenAPI document (pattern, enum, bounds, format) from the
same constants the checks below use, so the document and the 400 answers cannot disagree; the
checks stay ours so each 400 names the rule. Rules JSON Schema cannot state (`end` after `start`)
are written in the parameters' descriptions.
"""

from __future__ import annotations

import re
from collections import Counter
from datetime import datetime
from typing import Annotated, Any

import msgspec
import pandas as pd
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.openapi.spec import Example, OpenAPIType
from litestar.params import Parameter

from orchestrator.api.errors import MARKET_ERRORS
from orchestrator.api.resources import Resources
from orchestrator.dates import MOMENT_MAX_LENGTH, MOMENT_PATTERN, describe_moment, parse_moment
from orchestrator.errors import BadParameterError
from orchestrator.marketdata.store import BarStore
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


def moment_query(description: str, *, end: bool) -> Any:
    """An optional date or date-time as people type it (orchestrator/dates.py), declared as a
    string of exactly the form parse_moment accepts (not nullable)."""
    return declared(
        f"{description}; {describe_moment(end=end)}",
        one_of=None,
        type=OpenAPIType.STRING,
        pattern=MOMENT_PATTERN,
        max_length=MOMENT_MAX_LENGTH,
    )


def reject_repeated_query(request: Request[Any, Any, Any]) -> None:
    """A parameter given twice is ambiguous (Litestar would keep the last one silently)."""
    counts = Counter(key for key, _ in request.query_params.multi_items())
    for key, count in counts.items():
        if count > 1:
            raise BadParameterError(f"{key} is given {count} times; give it once", field=key)


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
        raise BadParameterError(
            f"limit must be between 1 and {MAX_LIMIT}, got {limit}", field="limit"
        )
    return limit


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
        summary="OHLCV bars from the store (the newest `limit`, or from `start` and/or to `end`)",
        description="Without `start` and `end`: the newest `limit` bars. With `start`: the first "
        "`limit` bars from it (until `end`, or the newest bar). With `end` alone: the newest "
        "`limit` bars before it. Dates are YYYY-MM-DD or RFC 3339, alike for both.",
        responses=MARKET_ERRORS,
    )
    async def history(
        self,
        resources: NamedDependency[Resources],
        symbol: SymbolPath,
        limit: Annotated[
            int, limit_query("bars (the newest; with `start`, the first from it)")
        ] = 500,
        timeframe: Annotated[
            str,
            timeframe_query(STORED_TIMEFRAMES, "coarser ones are resampled from the stored bars"),
        ] = "5m",
        start: Annotated[
            str | None,
            moment_query("First bar (inclusive; alone: up to the newest bar)", end=False),
        ] = None,
        end: Annotated[
            str | None,
            moment_query("End (exclusive; after `start`; alone: the bars before it)", end=True),
        ] = None,
    ) -> HistoryResponse:
        sym, tf = checked_symbol(symbol), checked_timeframe(timeframe, STORED_TIMEFRAMES)
        count = checked_limit(limit)
        since = None if start is None else parse_moment("start", start)
        until = None if end is None else parse_moment("end", end, end=True)
        if since is not None and until is not None and until <= since:
            raise BadParameterError(
                f"end ({end}) must be after start ({start}); a date as the end includes that day",
                field="end",
            )
        store = BarStore(await resources.database())
        if since is not None:
            frame = await store.bars_between(sym, tf, since, until, limit=count)
        else:
            frame = await store.latest_bars(sym, tf, count, before=until)
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
