"""/api/indicators over the real store: every conventional indicator equals TA-Lib called directly
on the store's whole history (so the warm-up read before the first answered bar is enough), VWAP
equals pandas-ta's; query options equal inline values; `scale=model` answers the models' feature
pipeline unchanged; every bad request is a 400 that names the parameter and says how to fix it.
No Triton: indicators never ask it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd
import pandas_ta as ta
import pytest
import talib
from litestar.testing import AsyncTestClient
from talib._ta_lib import MA_Type

from orchestrator.api.app import create_app
from orchestrator.demo.generator import generate_bars
from orchestrator.devstack.process import free_ports
from orchestrator.features.indicators import LOOKBACK_BARS, compute_features
from orchestrator.ingest.writer import write_bars
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore, SymbolInfo
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import (
    ApiSettings,
    DatabaseSettings,
    RedisSettings,
    Settings,
    TritonSettings,
)

Array = npt.NDArray[np.float64]
SMA = MA_Type.SMA
EVERY_INDICATOR = (
    "rsi,macd,atr,bbands,sma,ema,adx,stoch,obv,vwap,"
    "rsi:21,macd:8:21:5,atr:7,bbands:10:2.5,sma:50,ema:50,adx:7,stoch:5:3:2"
)


@pytest.fixture
async def client(
    db_settings: DatabaseSettings, redis_flushed: str
) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    http, grpc, metrics = free_ports(3)  # nothing listens there
    settings = Settings(
        db=db_settings,
        triton=TritonSettings(http_port=http, grpc_port=grpc, metrics_port=metrics),
        api=ApiSettings(),
        redis=RedisSettings(url=redis_flushed),
    )
    async with AsyncTestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
async def stored(clean_db: Database) -> Database:
    """BTCUSD: 40 days of 5m bars (11,520)."""
    bars = generate_bars("BTCUSD", days=40, seed=11)
    frame = bars.reset_index().assign(symbol="BTCUSD", timeframe="5m")
    info = {"BTCUSD": SymbolInfo("BTCUSD", "crypto", 0.01, Timeframe.M5)}
    await write_bars(clean_db, frame, info, show_progress=False)
    return clean_db


def _talib(bars: pd.DataFrame) -> dict[str, Array]:
    """EVERY_INDICATOR's values straight from TA-Lib, parameters spelled out here."""
    h, low, c = (bars[k].to_numpy(dtype=np.float64) for k in ("high", "low", "close"))
    out: dict[str, Array] = {}
    for suffix, rsi, (fast, slow, signal), atr, (bb_n, bb_std), sma, ema, adx, (k, d, sm) in (
        ("", 14, (12, 26, 9), 14, (20, 2.0), 20, 20, 14, (14, 3, 3)),
        ("_x", 21, (8, 21, 5), 7, (10, 2.5), 50, 50, 7, (5, 3, 2)),
    ):
        macd = talib.MACD(c, fastperiod=fast, slowperiod=slow, signalperiod=signal)
        bands = talib.BBANDS(c, timeperiod=bb_n, nbdevup=bb_std, nbdevdn=bb_std, matype=SMA)
        stoch = talib.STOCH(
            h, low, c, fastk_period=k, slowk_period=sm, slowk_matype=SMA, slowd_period=d,
            slowd_matype=SMA,
        )  # fmt: skip
        series = {
            "rsi": talib.RSI(c, timeperiod=rsi),
            "macd": macd[0],
            "macd_signal": macd[1],
            "macd_hist": macd[2],
            "atr": talib.ATR(h, low, c, timeperiod=atr),
            "bb_upper": bands[0],
            "bb_middle": bands[1],
            "bb_lower": bands[2],
            "sma": talib.SMA(c, timeperiod=sma),
            "ema": talib.EMA(c, timeperiod=ema),
            "adx": talib.ADX(h, low, c, timeperiod=adx),
            "plus_di": talib.PLUS_DI(h, low, c, timeperiod=adx),
            "minus_di": talib.MINUS_DI(h, low, c, timeperiod=adx),
            "stoch_k": stoch[0],
            "stoch_d": stoch[1],
        }
        out.update({name + suffix: values for name, values in series.items()})
    return out


INLINE_NAMES = {  # the "_x" set above, as the API names it
    "rsi_x": "rsi_21",
    "macd_x": "macd_8_21_5",
    "macd_signal_x": "macd_signal_8_21_5",
    "macd_hist_x": "macd_hist_8_21_5",
    "atr_x": "atr_7",
    "bb_upper_x": "bb_upper_10_2.5",
    "bb_middle_x": "bb_middle_10_2.5",
    "bb_lower_x": "bb_lower_10_2.5",
    "sma_x": "sma_50",
    "ema_x": "ema_50",
    "adx_x": "adx_7",
    "plus_di_x": "plus_di_7",
    "minus_di_x": "minus_di_7",
    "stoch_k_x": "stoch_k_5_3_2",
    "stoch_d_x": "stoch_d_5_3_2",
}


def _answered(body: dict[str, Any], key: str) -> Array:
    return np.array([np.nan if v is None else v for v in body["values"][key]], dtype=np.float64)


@pytest.mark.parametrize(("timeframe", "limit"), [("5m", 300), ("1h", 200), ("1d", 30)])
async def test_every_indicator_equals_talib_on_the_whole_stored_history(
    stored: Database,
    client: AsyncTestClient,  # type: ignore[type-arg]
    timeframe: str,
    limit: int,
) -> None:
    """The API reads only `limit` bars plus each indicator's warm-up; TA-Lib here reads all 40
    days. Equal values mean the first answered bar is settled. (1d: 40 bars in all, so the early
    values are undefined (null) in both, at the same places.)"""
    response = await client.get(
        "/api/indicators/BTCUSD",
        params={"indicators": EVERY_INDICATOR, "timeframe": timeframe, "limit": limit},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    bars = await BarStore(stored).latest_bars("BTCUSD", Timeframe(timeframe), 10_000)
    answered = bars.iloc[-limit:]
    assert body["scale"] == "price"
    assert [pd.Timestamp(t) for t in body["times"]] == list(answered.index)
    want = {INLINE_NAMES.get(key, key): values[-limit:] for key, values in _talib(bars).items()}
    # OBV is a running sum from the first answered bar, as TA-Lib's on those bars.
    want["obv"] = talib.OBV(
        answered["close"].to_numpy(dtype=np.float64), answered["volume"].to_numpy(np.float64)
    )
    # TA-Lib has no VWAP: pandas-ta's (anchored at each day) is the reference.
    want["vwap"] = ta.vwap(bars["high"], bars["low"], bars["close"], bars["volume"]).to_numpy()[
        -limit:
    ]
    assert set(body["values"]) == set(want)
    price = float(bars["close"].median())
    for key, values in want.items():
        got = _answered(body, key)
        assert len(got) == len(answered), key
        np.testing.assert_allclose(got, values, rtol=1e-7, atol=1e-9 * price, err_msg=key)
        if timeframe != "1d":
            assert np.isfinite(got).all(), key
    for key in ("rsi", "adx", "plus_di", "minus_di", "stoch_k", "stoch_d"):
        got = _answered(body, key)
        assert np.nanmin(got) >= 0, key
        assert np.nanmax(got) <= 100, key
    assert body["parameters"]["macd_signal_8_21_5"] == {"fast": 8, "slow": 21, "signal": 5}
    assert body["parameters"]["bb_lower_10_2.5"] == {"length": 10, "std": 2.5}
    assert body["parameters"]["obv"] == {}


async def test_query_options_equal_inline_values(
    stored: Database,
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    options = await client.get(
        "/api/indicators/BTCUSD",
        params={"indicators": "rsi,macd,bbands", "rsi_length": 21, "macd_fast": 8,
                "macd_slow": 21, "macd_signal": 5, "bbands_std": "2.5", "limit": 50},
    )  # fmt: skip
    inline = await client.get(
        "/api/indicators/BTCUSD",
        params={"indicators": "rsi:21,macd:8:21:5,bbands:20:2.5", "limit": 50},
    )
    assert options.status_code == inline.status_code == 200, (options.text, inline.text)
    by_option, by_inline = options.json(), inline.json()
    assert list(by_option["values"]) == [
        *("rsi", "macd", "macd_signal", "macd_hist", "bb_upper", "bb_middle", "bb_lower")
    ]
    assert by_option["values"]["rsi"] == by_inline["values"]["rsi_21"]
    assert by_option["values"]["macd_hist"] == by_inline["values"]["macd_hist_8_21_5"]
    assert by_option["values"]["bb_upper"] == by_inline["values"]["bb_upper_20_2.5"]
    assert by_option["parameters"]["rsi"] == {"length": 21}
    # An inline value wins over the option for its own item; a cut-short item keeps the rest.
    mixed = await client.get(
        "/api/indicators/BTCUSD",
        params={"indicators": "macd:8,ema:20,ema:50", "macd_signal": 5, "ema_length": 9},
    )
    assert mixed.status_code == 200, mixed.text
    assert mixed.json()["parameters"] == {
        **{k: {"fast": 8, "slow": 26, "signal": 5} for k in
           ("macd_8_26_5", "macd_signal_8_26_5", "macd_hist_8_26_5")},
        "ema_20": {"length": 20},
        "ema_50": {"length": 50},
    }  # fmt: skip


async def test_scale_model_answers_the_feature_pipeline(
    stored: Database,
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    names = ["rsi", "macd", "atr", "bb_pctb", "ema_slow_dist", "stoch_k"]
    response = await client.get(
        "/api/indicators/BTCUSD",
        params={"indicators": ",".join(names), "scale": "model", "limit": 40},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    bars = await BarStore(stored).latest_bars("BTCUSD", Timeframe.M5, 40 + LOOKBACK_BARS)
    features = compute_features(bars).iloc[-40:]
    assert body["scale"] == "model"
    assert body["parameters"] == {}
    assert list(body["values"]) == names
    assert [pd.Timestamp(t) for t in body["times"]] == list(features.index)
    for name in names:
        np.testing.assert_array_equal(_answered(body, name), features[name].to_numpy(), name)
    rsi = _answered(body, "rsi")
    assert np.abs(rsi).max() <= 0.5  # centred on 0, not 0-100


async def test_the_default_is_rsi_macd_atr_in_price_units(
    stored: Database,
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    body = (await client.get("/api/indicators/btcusd", params={"limit": 5})).json()
    assert body["symbol"] == "BTCUSD"
    assert list(body["values"]) == ["rsi", "macd", "macd_signal", "macd_hist", "atr"]
    assert all(0 <= v <= 100 for v in body["values"]["rsi"])
    assert all(v > 0 for v in body["values"]["atr"])


@pytest.mark.parametrize(
    ("params", "field", "says"),
    [
        ({"indicators": "rsi,foo"}, "indicators", ["'foo'", "rsi, macd, atr, bbands", "vwap"]),
        ({"indicators": "bb_pctb"}, "indicators", ["'bb_pctb'", "need scale=model"]),
        ({"indicators": "bbands", "scale": "model"}, "indicators", ["'bbands'", "scale=price"]),
        ({"indicators": "rsi,,atr"}, "indicators", ["empty item", "rsi,atr"]),
        ({"indicators": "RSI"}, "indicators", ["'RSI'", "lower case"]),
        ({"indicators": "rsi:1"}, "indicators", ["rsi length", "from 2 to 200", "'rsi:1'"]),
        ({"indicators": "rsi:14.5"}, "indicators", ["an integer from 2 to 200", "'14.5'"]),
        ({"indicators": "ema:x"}, "indicators", ["ema length", "'x'"]),
        ({"indicators": "bbands:20:0"}, "indicators", ["bbands std", "a number from 0.1 to 10"]),
        ({"indicators": "macd:1:2:3:4"}, "indicators", ["at most 3", "macd:fast:slow:signal"]),
        ({"indicators": "obv:3"}, "indicators", ["at most 0", "'obv:3'"]),
        ({"indicators": "macd:26:12"}, "indicators", ["fast (26) must be less than slow (12)"]),
        ({"indicators": "macd", "macd_fast": "30"}, "macd_fast", ["fast (30)", "slow (26)"]),
        ({"rsi_length": "500"}, "rsi_length", ["rsi_length must be an integer from 2 to 200"]),
        ({"rsi_length": "abc"}, "rsi_length", ["from 2 to 200", "'abc'"]),
        ({"ema_length": "20.5"}, "ema_length", ["an integer", "'20.5'"]),
        ({"bbands_std": "-1"}, "bbands_std", ["a number from 0.1 to 10"]),
        ({"scale": "percent"}, "scale", ["price", "model"]),
        ({"scale": "model", "indicators": "rsi:21"}, "indicators", ["no parameters", "'rsi:21'"]),
        ({"scale": "model", "indicators": "rsi", "rsi_length": "21"}, "rsi_length", ["price"]),
        ({"limit": "0"}, "limit", ["between 1 and 10000"]),
    ],
)
async def test_bad_requests_say_what_is_wrong_and_how_to_fix_it(
    client: AsyncTestClient,  # type: ignore[type-arg]
    params: dict[str, str],
    field: str,
    says: list[str],
) -> None:
    response = await client.get("/api/indicators/BTCUSD", params=params)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["field"] == field
    for words in says:
        assert words in body["message"], body["message"]


async def test_an_unknown_symbol_is_404(
    clean_db: Database,
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    response = await client.get("/api/indicators/NOPEUSD", params={"indicators": "vwap"})
    assert response.status_code == 404, response.text
    assert response.json()["field"] == "symbol"
