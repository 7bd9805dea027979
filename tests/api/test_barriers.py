"""GET /api/signals with the caller's own take-profit, stop, horizon and side, against the real
Triton and MariaDB: three outcomes that sum to 1 from the served numbers, no new Triton
request, and a 400 that names the parameter for every bad value."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
import tritonclient.grpc as grpcclient
from litestar.testing import AsyncTestClient

from orchestrator.devstack.triton import TritonServer
from orchestrator.features.barriers import (
    BROWNIAN,
    barrier_odds,
    drift_inputs,
    fallback_scale,
)
from orchestrator.inference.models import ENSEMBLE
from orchestrator.signals.costs import DEFAULT_COSTS
from tests.conftest import TrainedRepository


def _inferences(server: TritonServer) -> int:
    stats = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    response = stats.get_inference_statistics(ENSEMBLE, as_json=True)
    return sum(
        int(m.get("inference_stats", {}).get("success", {}).get("count", 0))
        for m in response.get("model_stats", [])
    )


async def test_the_default_barrier_is_the_models_own_on_the_signals_side(
    loaded: TrainedRepository,
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    spec = loaded.models.spec
    prediction = (await client.get("/api/predict/BTCUSD")).json()
    body = (await client.get("/api/signals/BTCUSD")).json()
    barrier = body["barrier"]
    assert barrier["side"] == body["signal"]["direction"]
    assert (barrier["tp_atr"], barrier["sl_atr"]) == (spec.tp_atr, spec.sl_atr)
    assert barrier["horizon"] == spec.label_horizon
    assert barrier["take_profit"] == pytest.approx(body["signal"]["take_profit"])
    assert barrier["stop_loss"] == pytest.approx(body["signal"]["stop_loss"])
    total = barrier["p_tp_first"] + barrier["p_sl_first"] + barrier["p_neither"]
    assert total == pytest.approx(1.0, abs=1e-12)
    assert 0 < barrier["expected_bars"] <= barrier["horizon_bars"]
    assert barrier["answered_by"] in ("model", "fallback")
    # The closed form over the served numbers, as the response says they were served.
    k = spec.horizons.index(spec.label_horizon)
    horizon = prediction["horizons"][k]
    scale = fallback_scale(horizon["up_atr"], horizon["down_atr"])
    drift: npt.NDArray[np.float64] = np.zeros(1)
    shape = BROWNIAN
    if barrier["answered_by"] == "model":
        assert spec.head is not None
        assert spec.head.barriers is not None
        inputs = drift_inputs(
            horizon["up_atr"], horizon["down_atr"], prediction["p_long"], prediction["p_short"]
        )
        drift, scale = spec.head.barriers.path(k, np.asarray(scale), inputs)
        shape = spec.head.barriers.shape(k)
    sign = 1 if barrier["side"] == "long" else -1
    odds = barrier_odds(spec.tp_atr, spec.sl_atr, sign * drift, scale, horizon["bars"], shape=shape)
    assert barrier["p_tp_first"] == pytest.approx(float(odds.p_tp[0]), abs=1e-9)
    atr = prediction["atr"]
    costs = DEFAULT_COSTS["crypto"].round_trip * prediction["close"] / (spec.sl_atr * atr)
    assert barrier["cost_r"] == pytest.approx(costs, rel=1e-6)
    assert barrier["expected_r"] == pytest.approx(float(odds.expected_r[0]) - costs, abs=1e-9)


async def test_custom_barriers_answer_without_a_triton_request(
    loaded: TrainedRepository,
    model_server: TritonServer,
    client: AsyncTestClient,  # type: ignore[type-arg]
) -> None:
    prediction = (await client.get("/api/predict/BTCUSD")).json()
    before = _inferences(model_server)
    near = (await client.get("/api/signals/BTCUSD?tp=1&sl=1&horizon=swing&side=long")).json()
    far = (await client.get("/api/signals/BTCUSD?tp=3&sl=1&horizon=swing&side=long")).json()
    wide_stop = (await client.get("/api/signals/BTCUSD?tp=1&sl=2&horizon=swing&side=long")).json()
    close, atr = prediction["close"], prediction["atr"]
    by_price = (
        await client.get(
            "/api/signals/BTCUSD",
            params={
                "tp_price": str(close + 3 * atr),
                "sl": "1",
                "horizon": "swing",
                "side": "long",
            },
        )
    ).json()
    assert _inferences(model_server) == before
    for body in (near, far, wide_stop, by_price):
        b = body["barrier"]
        assert b["p_tp_first"] + b["p_sl_first"] + b["p_neither"] == pytest.approx(1.0, abs=1e-12)
        assert (b["side"], b["horizon"]) == ("long", "swing")
    assert far["barrier"]["p_tp_first"] < near["barrier"]["p_tp_first"]
    assert wide_stop["barrier"]["p_tp_first"] > near["barrier"]["p_tp_first"]
    assert by_price["barrier"]["tp_atr"] == pytest.approx(3.0)
    assert by_price["barrier"]["p_tp_first"] == pytest.approx(far["barrier"]["p_tp_first"])
    short = (await client.get("/api/signals/BTCUSD?tp=2&sl=1&side=short")).json()["barrier"]
    assert short["take_profit"] == pytest.approx(close - 2 * atr)
    assert short["stop_loss"] == pytest.approx(close + atr)


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ("tp=0", "tp", "between 0.1 and 20 ATR"),
        ("sl=abc", "sl", "must be a number"),
        ("tp=2&tp_price=1", "tp_price", "not both"),
        ("side=long&tp_price=1", "tp_price", "above the entry"),
        ("side=short&sl_price=1", "sl_price", "above the entry"),
        ("horizon=weekly", "horizon", "one of"),
        ("side=up", "side", "long or short"),
    ],
)
async def test_bad_barriers_are_400_naming_the_parameter(
    loaded: TrainedRepository,
    client: AsyncTestClient,  # type: ignore[type-arg]
    query: str,
    field: str,
    words: str,
) -> None:
    response = await client.get(f"/api/signals/BTCUSD?{query}")
    assert response.status_code == 400, response.text
    body = response.json()
    assert words in body["message"]
    assert body.get("field") == field
