"""GET /api/indicators: indicators in conventional units (the default, `scale=price`), or the
models' scale-free features (`scale=model`).

Parameters come inline (`rsi:21`, `macd:12:26:9`, `bbands:20:2`) or as query options
(`rsi_length=21`); an inline value wins for its own item and also names it (`rsi_21`), so one
request can ask for ema:20 and ema:50. As in market.py, each rule JSON Schema can state is
declared in the OpenAPI document from the constants the checks use; the others (ranges of inline
values, macd fast < slow, which names each scale has) are in the descriptions.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd
from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIType
from litestar.params import Parameter

from orchestrator.api.errors import MARKET_ERRORS
from orchestrator.api.market import (
    STORED_TIMEFRAMES,
    SymbolPath,
    checked_limit,
    checked_symbol,
    checked_timeframe,
    declared,
    limit_query,
    reject_repeated_query,
    timeframe_query,
)
from orchestrator.api.predictions import checked_number
from orchestrator.api.resources import Resources
from orchestrator.errors import BadParameterError
from orchestrator.features.indicators import FEATURE_NAMES, LOOKBACK_BARS, PARAMS, compute_features
from orchestrator.marketdata.indicators import (
    INDICATORS,
    Indicator,
    IndicatorCall,
    Param,
    compute_indicators,
    required_bars,
)
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import Timeframe

Scale = Literal["price", "model"]
SCALES: tuple[Scale, ...] = ("price", "model")
MODEL_INDICATORS = (*FEATURE_NAMES, "atr")
DEFAULT_INDICATORS = "rsi,macd,atr"
# pandas-ta answers None for a series shorter than an indicator's window: below the widest one
# every model feature is still undefined (null), like the warm-up rows at the start of a series.
MIN_FEATURE_BARS = max(int(value) for value in PARAMS.values())

# Query options: <indicator>_<parameter>, e.g. rsi_length, macd_fast, bbands_std.
OPTIONS: dict[str, tuple[Indicator, Param]] = {
    f"{ind.name}_{param.name}": (ind, param) for ind in INDICATORS.values() for param in ind.params
}
_INLINE_INTEGER = re.compile(r"[0-9]+")
_INLINE_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _item_pattern(ind: Indicator) -> str:
    values = "".join(
        f"(?::{(_INLINE_INTEGER if p.integer else _INLINE_NUMBER).pattern}" for p in ind.params
    )
    return re.escape(ind.name) + values + ")?" * len(ind.params)


_ITEM = (
    "(?:"
    + "|".join(
        [*(_item_pattern(ind) for ind in INDICATORS.values())]
        + [re.escape(name) for name in MODEL_INDICATORS if name not in INDICATORS]
    )
    + ")"
)
INDICATORS_PATTERN = f"^{_ITEM}(?:,{_ITEM})*$"


def _usage() -> str:
    return "; ".join(
        f"{ind.usage} ({ind.description}; "
        + (
            ", ".join(f"{p.name} {p.rule}, default {p.default:g}" for p in ind.params)
            or "no parameters"
        )
        + f"; values {', '.join(ind.outputs)})"
        for ind in INDICATORS.values()
    )


INDICATORS_DESCRIPTION = (
    "Comma-separated indicators, no spaces. With scale=price (default): "
    + _usage()
    + ". Inline parameters may be cut short (macd:8 keeps slow and signal) and suffix the value "
    "names with every parameter (rsi:21 -> rsi_21, bbands:20:2.5 -> bb_upper_20_2.5); macd "
    f"needs fast < slow. With scale=model, no parameters: {', '.join(MODEL_INDICATORS)}"
)


def _option_parameter(ind: Indicator, param: Param) -> Any:
    return Parameter(
        str | None,
        required=False,
        default=None,
        description=(
            f"{ind.name} {param.name}, {param.rule} (default {param.default:g}), for `{ind.name}` "
            f"items without an inline value; ignored unless {ind.name} is asked for; "
            "scale=price only"
        ),
        schema_extra={
            "one_of": None,
            "type": OpenAPIType.INTEGER if param.integer else OpenAPIType.NUMBER,
            "minimum": param.minimum,
            "maximum": param.maximum,
        },
    )


class IndicatorsResponse(msgspec.Struct):
    symbol: str
    timeframe: str
    scale: Scale
    times: list[datetime]
    values: dict[str, list[float | None]]  # value name -> one value per time (null in warm-up)
    parameters: dict[str, dict[str, float]]  # value name -> its parameters (empty: scale=model)


def checked_scale(raw: str) -> Scale:
    for scale in SCALES:
        if raw == scale:
            return scale
    raise BadParameterError(
        f"invalid scale {raw!r}: use price (conventional units) or model (the models' "
        "scale-free features)",
        field="scale",
    )


def _in_range(field: str, what: str, param: Param, raw: str, value: float | None) -> float:
    if (
        value is None
        or not param.minimum <= value <= param.maximum
        or (param.integer and not value.is_integer())
    ):
        raise BadParameterError(f"{what} must be {param.rule}, got {raw!r}", field=field)
    return int(value) if param.integer else value


def _option_value(name: str, param: Param, raw: str) -> float:
    """A query option is a JSON number, as JSON Schema reads one (2.0 is an integer)."""
    try:
        value: float | None = checked_number(name, raw)
    except BadParameterError:
        value = None
    return _in_range(name, name, param, raw, value)


def _inline_value(item: str, name: str, param: Param, raw: str) -> float:
    """An inline value is digits, with a decimal point for a float (the pattern's rule)."""
    pattern = _INLINE_INTEGER if param.integer else _INLINE_NUMBER
    value = float(raw) if pattern.fullmatch(raw) else None
    return _in_range("indicators", f"{name} {param.name} in {item!r}", param, raw, value)


def checked_options(raw: Mapping[str, str | None]) -> dict[str, float]:
    """Every given query option, in range whether or not its indicator is asked for."""
    return {
        name: _option_value(name, param, value)
        for name, (_, param) in OPTIONS.items()
        if (value := raw.get(name)) is not None
    }


def _unknown(names: list[str], scale: Scale) -> BadParameterError:
    valid = INDICATORS if scale == "price" else MODEL_INDICATORS
    other: Scale = "model" if scale == "price" else "price"
    elsewhere = [n for n in names if n in (MODEL_INDICATORS if other == "model" else INDICATORS)]
    hint = f"; {', '.join(elsewhere)} need scale={other}" if elsewhere else ""
    return BadParameterError(
        f"unknown indicator(s) {', '.join(map(repr, names))} for scale={scale}: give a "
        f"comma-separated list of {', '.join(valid)} (lower case, no spaces){hint}",
        field="indicators",
    )


def _call(item: str, options: Mapping[str, float]) -> IndicatorCall:
    name, *inline = item.split(":")
    ind = INDICATORS[name]
    if len(inline) > len(ind.params):
        raise BadParameterError(
            f"{name} takes at most {len(ind.params)} parameter(s) ({ind.usage}), got "
            f"{len(inline)} in {item!r}",
            field="indicators",
        )
    params = {p.name: options.get(f"{name}_{p.name}", p.default) for p in ind.params}
    for param, raw in zip(ind.params, inline, strict=False):
        params[param.name] = _inline_value(item, name, param, raw)
    if name == "macd" and params["fast"] >= params["slow"]:
        field = "indicators" if inline else "macd_fast" if "macd_fast" in options else "macd_slow"
        raise BadParameterError(
            f"macd fast ({params['fast']:g}) must be less than slow ({params['slow']:g})"
            f"{f' in {item!r}' if inline else ''}; e.g. macd:12:26:9",
            field=field,
        )
    return IndicatorCall(ind, params, inline=bool(inline))


def checked_price_calls(raw: str, options: Mapping[str, float]) -> list[IndicatorCall]:
    items = raw.split(",")
    if "" in items:
        raise BadParameterError(
            f"empty item in {raw!r}: separate names with single commas, e.g. rsi,atr",
            field="indicators",
        )
    unknown = [i.split(":")[0] for i in items if i.split(":")[0] not in INDICATORS]
    if unknown:
        raise _unknown(list(dict.fromkeys(unknown)), "price")
    calls = {call.keys: call for call in (_call(item, options) for item in items)}
    return list(calls.values())


def checked_model_names(raw: str, options: Mapping[str, float]) -> list[str]:
    names = raw.split(",")
    with_values = [n for n in names if ":" in n]
    if with_values:
        raise BadParameterError(
            f"the model features take no parameters ({', '.join(map(repr, with_values))}): "
            "drop the ':' values, or use scale=price",
            field="indicators",
        )
    if options:
        raise BadParameterError(
            f"{', '.join(options)}: options for scale=price only; the model features keep the "
            "feature spec's parameters (drop the option, or use scale=price)",
            field=next(iter(options)),
        )
    unknown = [name for name in names if name not in MODEL_INDICATORS]
    if unknown:
        raise _unknown(list(dict.fromkeys(unknown)), "model")
    return list(dict.fromkeys(names))


@dataclass(frozen=True)
class AskedIndicators:
    scale: Scale
    calls: list[IndicatorCall]  # scale=price
    names: list[str]  # scale=model


def checked_request(
    indicators: str, scale: str, options: Mapping[str, str | None]
) -> AskedIndicators:
    """What a request asks for; a 400 naming the parameter at the first problem."""
    chosen, given = checked_scale(scale), checked_options(options)
    if chosen == "model":
        return AskedIndicators(chosen, [], checked_model_names(indicators, given))
    return AskedIndicators(chosen, checked_price_calls(indicators, given), [])


Series = npt.NDArray[np.float64]


async def _price_values(
    store: BarStore, symbol: str, tf: Timeframe, calls: list[IndicatorCall], count: int
) -> tuple[pd.Index, dict[str, Series]]:
    bars = await store.latest_bars(symbol, tf, required_bars(calls, count, tf.seconds))
    # Up to ~35,000 bars of TA-Lib work: off the event loop, like the model features.
    values = await asyncio.to_thread(compute_indicators, bars, calls, count, tf.seconds)
    return bars.index[-count:], values


async def _model_values(
    store: BarStore, symbol: str, tf: Timeframe, names: list[str], count: int
) -> tuple[pd.Index, dict[str, Series]]:
    bars = await store.latest_bars(symbol, tf, count + LOOKBACK_BARS)
    if len(bars) < MIN_FEATURE_BARS:
        features = pd.DataFrame(np.nan, index=bars.index, columns=list(MODEL_INDICATORS))
    else:
        # Up to ~10,600 bars of pandas-ta work: off the event loop, like /api/predict's seeds.
        features = await asyncio.to_thread(compute_features, bars)
    features = features.iloc[-count:]
    return features.index, {name: features[name].to_numpy() for name in names}


def _nullable(values: Series) -> list[float | None]:
    return [float(v) if np.isfinite(v) else None for v in values]


class IndicatorsController(Controller):
    path = "/api"
    tags = ["market data"]  # noqa: RUF012
    before_request = staticmethod(reject_repeated_query)
    # Declared on the controller, the layer that takes a map; read from the query in the handler.
    parameters = {name: _option_parameter(*pair) for name, pair in OPTIONS.items()}  # noqa: RUF012

    @get(
        "/indicators/{symbol:str}",
        summary="Indicators in conventional units (or the models' scale-free features)",
        responses=MARKET_ERRORS,
    )
    async def indicators(
        self,
        request: Request[Any, Any, Any],
        resources: NamedDependency[Resources],
        symbol: SymbolPath,
        indicators: Annotated[
            str, declared(INDICATORS_DESCRIPTION, pattern=INDICATORS_PATTERN)
        ] = DEFAULT_INDICATORS,
        scale: Annotated[
            str,
            declared(
                "price: conventional units (RSI 0-100, MACD/ATR/bands/averages in price units); "
                "model: the models' scale-free features (RSI centred on 0, ATR units)",
                enum=list(SCALES),
            ),
        ] = "price",
        timeframe: Annotated[
            str,
            timeframe_query(STORED_TIMEFRAMES, "coarser ones are resampled from the stored bars"),
        ] = "5m",
        limit: Annotated[int, limit_query("of the newest bars")] = 100,
    ) -> IndicatorsResponse:
        sym, tf = checked_symbol(symbol), checked_timeframe(timeframe, STORED_TIMEFRAMES)
        options = {name: request.query_params.get(name) for name in OPTIONS}
        asked, count = checked_request(indicators, scale, options), checked_limit(limit)
        store = BarStore(await resources.database())
        if asked.scale == "price":
            times, values = await _price_values(store, sym, tf, asked.calls, count)
        else:
            times, values = await _model_values(store, sym, tf, asked.names, count)
        return IndicatorsResponse(
            sym,
            tf.value,
            asked.scale,
            [t.to_pydatetime() for t in times],
            {key: _nullable(series) for key, series in values.items()},
            {key: dict(call.params) for call in asked.calls for key in call.keys},
        )
