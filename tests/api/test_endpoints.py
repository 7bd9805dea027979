"""/api/predict, /api/history, /api/indicators against the real database and the real Triton
serving freshly trained models; predictions must equal a direct Triton call on the same features."""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import tritonclient.grpc as grpcclient
from litestar.testing import AsyncTestClient

from orchestrator.api.app import create_app
from orchestrator.devstack.triton import TritonServer
from orchestrator.features.head import apply_head
from orchestrator.features.online import ModelInputs, inputs_for_latest
from orchestrator.inference.models import ENSEMBLE, served_name
from orchestrator.marketdata.sessions import infer_week
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.settings import DatabaseSettings
from orchestrator.signals.costs import DEFAULT_COSTS
from tests.api.conftest import api_settings
from tests.conftest import TrainedRepository


def _direct_infer(
    server: TritonServer, inputs: ModelInputs, ensemble: str
) -> grpcclient.InferResult:
    """The same inputs straight to Triton, bypassing the orchestrator."""
    direct = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    tensors = []
    for name, array in (("SEQ", inputs.seq), ("TAB", inputs.tab), ("CTX", inputs.ctx)):
        tensor = grpcclient.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return direct.infer(ensemble, tensors)


async def test_predict_equals_a_direct_triton_call(
    loaded: TrainedRepository,
    model_server: TritonServer,
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    response = await client.get("/api/predict/btcusd")
    assert response.status_code == 200, response.text
    body = response.json()
    bars = loaded.data[0].bars
    inputs = inputs_for_latest(bars, loaded.models.spec)
    result = _direct_infer(model_server, inputs, ENSEMBLE)
    gru, tf = result.as_numpy("GRU_RANGE")[0], result.as_numpy("TF_RANGE")[0]
    assert body["symbol"] == "BTCUSD"
    assert body["bar_time"].startswith(bars.index[-1].strftime("%Y-%m-%dT%H:%M:%S"))
    assert body["close"] == pytest.approx(float(bars["close"].iloc[-1]))
    assert [h["horizon"] for h in body["horizons"]] == ["scalping", "intraday", "swing", "position"]
    # Served: the spec's head over the networks' outputs and the baselines' inputs.
    served = apply_head(
        loaded.models.spec.head,
        gru[np.newaxis],
        tf[np.newaxis],
        inputs.har,
        inputs.season,
        result.as_numpy("P_LONG")[:, 1],
        result.as_numpy("P_SHORT")[:, 1],
        result.as_numpy("CONFIDENCE")[:, 0],
    )
    assert served.intervals is not None
    assert body["interval_level"] == 0.8
    # Live outcomes shift each probability (none resolved yet in a fresh store: about 0).
    shift = body["probability_shift"]
    assert set(shift) == {"p_long", "p_short", "confidence"}
    assert body["p_long"] == pytest.approx(float(served.p_long[0]) + shift["p_long"], abs=1e-6)
    assert body["p_short"] == pytest.approx(float(served.p_short[0]) + shift["p_short"], abs=1e-6)
    for k, horizon in enumerate(body["horizons"]):
        assert horizon["gru"]["up"] == pytest.approx(float(gru[2 * k]), abs=1e-5)
        assert horizon["transformer"]["down"] == pytest.approx(float(tf[2 * k + 1]), abs=1e-5)
        up, down = served.ranges[0, 2 * k], served.ranges[0, 2 * k + 1]
        assert horizon["up_atr"] == pytest.approx(up, abs=1e-5)
        assert horizon["high"] == pytest.approx(inputs.close + up * inputs.atr, rel=1e-6)
        assert horizon["low"] == pytest.approx(inputs.close - down * inputs.atr, rel=1e-6)
        lo, hi = served.intervals[0, 2 * k]
        assert horizon["high_interval"] == pytest.approx(
            [inputs.close + lo * inputs.atr, inputs.close + hi * inputs.atr], rel=1e-6
        )
        low_interval = horizon["low_interval"]
        assert low_interval[0] <= low_interval[1] <= inputs.close
    assert body["confidence"] == pytest.approx(float(served.confidence[0]), abs=1e-5)
    assert body["p_long"] == pytest.approx(float(served.p_long[0]), abs=1e-5)
    head = loaded.models.spec.head
    assert head is not None
    week = infer_week(pd.DatetimeIndex(bars.index[-8 * 7 * 288 :]), Timeframe.M5)
    assert week.always_open  # BTCUSD trades 24/7
    bar_open = bars.index[-1].to_pydatetime()
    for k, horizon in enumerate(body["horizons"]):
        assert horizon["served_by"] == {"high": head.served[2 * k], "low": head.served[2 * k + 1]}
        ends = datetime.fromisoformat(horizon["ends_at"].replace("Z", "+00:00"))
        assert ends == week.bar_close(bar_open, horizon["bars"])
        assert ends == bar_open + timedelta(minutes=5 * (horizon["bars"] + 1))
    assert body["probability_served"] == {
        name: head.probability_source(name) for name in ("p_long", "p_short", "confidence")
    }
    one = (await client.get("/api/predict/BTCUSD", params={"horizon": "swing"})).json()
    assert [h["horizon"] for h in one["horizons"]] == ["swing"]


async def test_history_and_indicators(
    loaded: TrainedRepository,
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    bars = loaded.data[0].bars
    history = (await client.get("/api/history/BTCUSD", params={"limit": 3})).json()
    assert [b["close"] for b in history["bars"]] == pytest.approx(bars["close"].iloc[-3:].tolist())
    hourly = (
        await client.get("/api/history/BTCUSD", params={"limit": 2, "timeframe": "1h"})
    ).json()
    assert len(hourly["bars"]) == 2
    indicators = (
        await client.get("/api/indicators/BTCUSD", params={"indicators": "rsi,atr", "limit": 5})
    ).json()
    assert set(indicators["values"]) == {"rsi", "atr"}
    assert len(indicators["values"]["atr"]) == 5
    assert all(np.isfinite(v) for v in indicators["values"]["atr"])


@pytest.mark.parametrize(
    ("path", "params", "status", "field"),
    [
        ("/api/predict/NOPEUSD", {}, 404, "symbol"),
        ("/api/predict/BTC$USD", {}, 400, "symbol"),
        ("/api/predict/BTCUSD", {"horizon": "weekly"}, 400, "horizon"),
        ("/api/predict/BTCUSD", {"timeframe": "2h"}, 400, "timeframe"),
        ("/api/predict/BTCUSD", {"timeframe": "1h"}, 404, "timeframe"),
        ("/api/predict/SHORTUSD", {}, 422, None),
        ("/api/indicators/BTCUSD", {"indicators": "rsi,foo"}, 400, "indicators"),
        ("/api/history/BTCUSD", {"limit": "0"}, 400, "limit"),
        ("/api/history/BTCUSD", {"limit": "many"}, 400, "limit"),
    ],
)
async def test_errors_say_what_is_wrong(
    loaded: TrainedRepository,
    client: AsyncTestClient,  # type: ignore[type-arg]
    path: str,
    params: dict[str, str],
    status: int,
    field: str | None,
) -> None:
    response = await client.get(path, params=params)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["message"]
    assert "Traceback" not in response.text
    if field:
        assert body.get("field") == field
    if status == 422:
        assert "needed" in body["message"]


async def test_triton_down_is_503_ml_service_unavailable(
    loaded: TrainedRepository,
    db_settings: DatabaseSettings,
    model_server: TritonServer,
    redis_flushed: str,
) -> None:
    app = create_app(api_settings(db_settings, model_server, redis_flushed, grpc_port=1))
    async with AsyncTestClient(app) as down:
        response = await down.get("/api/predict/BTCUSD")
    assert response.status_code == 503
    assert response.json()["error"] == "ML service unavailable"


async def test_signal_follows_the_models_and_the_strategy(
    loaded: TrainedRepository,
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    spec = loaded.models.spec
    prediction = (await client.get("/api/predict/BTCUSD")).json()
    body = (await client.get("/api/signals/BTCUSD", params={"min_confidence": "0"})).json()
    signal = body["signal"]
    atr, close = prediction["atr"], prediction["close"]
    sign = 1 if prediction["direction"] == "long" else -1
    assert signal["direction"] == prediction["direction"]
    assert signal["entry"] == pytest.approx(close)
    assert signal["take_profit"] == pytest.approx(close + sign * spec.tp_atr * atr)
    assert signal["stop_loss"] == pytest.approx(close - sign * spec.sl_atr * atr)
    assert signal["confidence"] == pytest.approx(prediction["confidence"])
    assert signal["horizon"] == "intraday"
    assert body["strategy"]["name"] == "balanced"
    # Expected R from the served P(win), every non-win a full stop, BTCUSD's crypto costs in R.
    costs = DEFAULT_COSTS["crypto"].round_trip * close / (spec.sl_atr * atr)
    assert signal["cost_r"] == pytest.approx(costs, rel=1e-6)
    p_win = signal["confidence"]
    reward = spec.tp_atr / spec.sl_atr
    assert signal["expected_r"] == pytest.approx(p_win * reward - (1 - p_win) - costs, abs=1e-9)
    assert signal["edge"] == (signal["expected_r"] >= 0.05)
    assert body["p_win_served"] == prediction["probability_served"]["confidence"]
    strict = (await client.get("/api/signals/BTCUSD", params={"min_confidence": "1"})).json()
    assert strict["signal"]["action"] == "none"
    assert "confidence" in strict["signal"]["reason"]
    unknown = await client.get("/api/signals/BTCUSD", params={"strategy": "yolo"})
    assert unknown.status_code == 400
    assert "aggressive_filter" in unknown.json()["message"]


async def test_concurrent_identical_requests_make_one_triton_call(
    loaded: TrainedRepository,
    db_settings: DatabaseSettings,
    model_server: TritonServer,
    redis_flushed: str,
) -> None:
    import asyncio

    stats = grpcclient.InferenceServerClient(f"127.0.0.1:{model_server.grpc_port}")

    def ensemble_inferences() -> int:
        response = stats.get_inference_statistics(ENSEMBLE, as_json=True)
        return sum(
            int(m.get("inference_stats", {}).get("success", {}).get("count", 0))
            for m in response.get("model_stats", [])
        )

    app = create_app(api_settings(db_settings, model_server, redis_flushed))
    async with AsyncTestClient(app) as fresh:
        before = ensemble_inferences()
        responses = await asyncio.gather(*(fresh.get("/api/predict/BTCUSD") for _ in range(20)))
        signal = await fresh.get("/api/signals/BTCUSD")  # same bar, same model: served from cache
        after = ensemble_inferences()
        cache = app.state.resources.predictions
    assert all(r.status_code == 200 for r in responses)
    assert signal.status_code == 200
    assert len({r.text for r in responses}) == 1
    assert after - before == 1
    # The bar-close engine may have started that computation before the requests arrived: then
    # every request joined it; otherwise the first started it and the others joined or hit.
    assert cache.misses <= 1
    assert cache.hits + cache.joined + cache.misses == 21


async def test_stats_and_metrics(
    loaded: TrainedRepository,
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    assert (await client.get("/api/predict/BTCUSD")).status_code == 200
    assert (await client.get("/api/predict/BTCUSD")).status_code == 200
    stats = (await client.get("/api/stats")).json()
    assert stats["requests"] >= 2
    assert stats["responses_by_status"]["200"] >= 2
    assert stats["latency"]["p50_ms"] > 0
    assert stats["cache_misses"] <= 1  # 0 when the bar-close engine scored the bar first
    assert stats["cache_hits"] >= 1
    assert stats["bar_close"]["predictions"] >= 1
    assert stats["bar_close"]["freshness_queries"] >= 1
    assert stats["bar_close"]["heap"]["freezes"] >= 1  # what the sweeps left (heap.py)
    models = {m["name"]: m for m in stats["models"]}
    assert models[ENSEMBLE]["inferences"] >= 1
    inputs = stats["triton_inputs"]  # Triton on this host: inputs through /dev/shm
    assert inputs["shared_memory"] is True
    assert inputs["requests_through_shared_memory"] >= 1
    assert inputs["regions"] >= 1
    assert inputs["last_refusal"] is None
    assert models[ENSEMBLE]["avg_batch_size"] >= 1.0
    assert (
        models["range_gru"]["versions"] == [str(loaded.version)] or models["range_gru"]["versions"]
    )
    metrics = (await client.get("/metrics")).text
    assert (
        'orchestrator_requests_total{app_name="trading_ml_engine",method="GET",path="/api/predict/{symbol}",status_code="200"}'
        in metrics
    )


async def test_tritons_counters_are_read_at_most_once_per_max_age(
    loaded: TrainedRepository,
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    """/api/stats shares one read of Triton's statistics for `max_age_s` (a dashboard polling
    it ten times a second costs one Triton call a second)."""
    reader = client.app.state.model_stats
    reader.max_age_s = 3600.0
    first = (await client.get("/api/stats")).json()
    read_at = reader.read_at
    assert ENSEMBLE in {m["name"] for m in first["models"]}
    assert first["triton_error"] is None
    second = (await client.get("/api/stats")).json()
    assert reader.read_at == read_at
    assert second["models"] == first["models"]
    reader.max_age_s = 0.0
    await client.get("/api/stats")
    assert reader.read_at > read_at


async def test_15m_requests_are_answered_by_the_15m_model_set(
    loaded: TrainedRepository,
    model_server: TritonServer,
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    response = await client.get("/api/predict/BTCUSD", params={"timeframe": "15m"})
    assert response.status_code == 200, response.text
    body = response.json()
    bars = loaded.data_15m[0].bars  # the store's 5m bars resampled on read equal these
    inputs = inputs_for_latest(bars, loaded.models_15m.spec)
    result = _direct_infer(model_server, inputs, served_name(ENSEMBLE, "15m"))
    gru = result.as_numpy("GRU_RANGE")[0]
    assert body["timeframe"] == "15m"
    assert body["bar_time"].startswith(bars.index[-1].strftime("%Y-%m-%dT%H:%M:%S"))
    assert body["feature_fingerprint"] == loaded.models_15m.spec.fingerprint
    for k, horizon in enumerate(body["horizons"]):
        assert horizon["gru"]["up"] == pytest.approx(float(gru[2 * k]), abs=1e-5)
    assert [h["bars"] for h in body["horizons"]] == [2, 16, 96, 480]

    signal = await client.get("/api/signals/BTCUSD", params={"timeframe": "15m"})
    assert signal.status_code == 200, signal.text
    assert signal.json()["signal"]["horizon_bars"] == 16  # intraday: 4 h of 15m bars

    missing = await client.get("/api/predict/BTCUSD", params={"timeframe": "1h"})
    assert missing.status_code == 404
    assert missing.json()["field"] == "timeframe"
    assert "no 1h models are served" in missing.json()["message"]

    health = (await client.get("/health")).json()
    assert health["triton"]["timeframes"] == ["5m", "15m"]
