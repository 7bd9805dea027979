"""Serving behaviour: one ensemble request carries a whole signal, bad input is refused per
request, features match training, specs are enforced, and a new version loads without a gap."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpc_aio
from tritonclient.utils import InferenceServerException

from export.catalog import ENSEMBLE, GRU
from export.exporter import export_profiles
from export.train import build_inputs, classifier_proba, collect_samples
from orchestrator.devstack.triton import TritonServer
from orchestrator.features.dataset import normalise, sequence_windows
from orchestrator.features.indicators import compute_features
from orchestrator.features.online import NotEnoughHistoryError, inputs_for_latest, required_bars
from orchestrator.features.spec import FeatureSpec, FeatureSpecMismatchError, check_compatible
from orchestrator.inference.models import (
    FEATURE_MODELS,
    check_config_fingerprint,
    verify_served_models,
)
from tests.conftest import until
from tests.models.conftest import TrainedRepository


def _client(server: TritonServer) -> grpcclient.InferenceServerClient:
    return grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")


def _input(name: str, x: np.ndarray, dtype: str = "FP32") -> grpcclient.InferInput:
    tensor = grpcclient.InferInput(name, list(x.shape), dtype)
    tensor.set_data_from_numpy(x)
    return tensor


def test_one_ensemble_request_yields_the_whole_signal(
    trained: TrainedRepository, model_server: TritonServer
) -> None:
    samples = collect_samples(trained.data)
    pick = samples.subset(np.arange(len(samples)) % max(1, len(samples) // 5) == 0)
    inputs = build_inputs(trained.data, pick, trained.models.spec)
    result = _client(model_server).infer(
        ENSEMBLE, [_input("SEQ", inputs.seq), _input("TAB", inputs.tab), _input("CTX", inputs.ctx)]
    )
    p_long = result.as_numpy("P_LONG")
    np.testing.assert_allclose(
        p_long, classifier_proba(trained.models.xgb_long, inputs.tab), atol=1e-6
    )
    confidence, direction = result.as_numpy("CONFIDENCE"), result.as_numpy("DIRECTION")
    assert confidence.shape == (len(pick), 1)
    assert ((confidence > 0) & (confidence < 1)).all()
    expected_direction = np.where(p_long[:, 1] >= result.as_numpy("P_SHORT")[:, 1], 1.0, -1.0)
    np.testing.assert_array_equal(direction[:, 0], expected_direction)
    assert (result.as_numpy("GRU_RANGE") > 0).all()


@pytest.mark.parametrize(
    ("make_input", "message"),
    [
        (lambda seq: _input("SEQ", seq[:, :10]), "unexpected shape"),
        (lambda seq: _input("SEQ", seq.astype(np.float64), "FP64"), "data-type"),
        (
            lambda seq: _input(
                "SEQ",
                np.where(np.arange(seq.size).reshape(seq.shape) == 5, np.nan, seq).astype(
                    np.float32
                ),
            ),
            "NaN or infinity",
        ),
    ],
    ids=["wrong-shape", "wrong-dtype", "nan"],
)
def test_bad_input_is_invalid_arg_and_the_model_stays_up(
    trained: TrainedRepository, model_server: TritonServer, make_input: object, message: str
) -> None:
    seq = np.zeros((2, trained.models.spec.window, trained.models.spec.n_features), np.float32)
    client = _client(model_server)
    with pytest.raises(InferenceServerException) as caught:
        client.infer(GRU, [make_input(seq)])  # type: ignore[operator]
    assert message in str(caught.value)
    assert "INVALID_ARG" in str(caught.value.status()) or message in str(caught.value)
    assert client.is_model_ready(GRU)
    ok = client.infer(GRU, [_input("SEQ", seq)])
    assert ok.as_numpy("RANGE").shape == (2, 8)


def test_serving_features_equal_training_features(trained: TrainedRepository) -> None:
    spec = trained.models.spec
    bars = trained.data[0].bars
    for t in (len(bars) - 1, len(bars) // 2):
        history = bars.iloc[: t + 1]
        served = inputs_for_latest(history, spec)  # the serving path: a bounded tail only
        full = normalise(compute_features(bars), spec)  # the training path: all history
        trained_seq = sequence_windows(full, np.array([t]), spec.window)
        np.testing.assert_allclose(served.seq, trained_seq, atol=1e-5)
        assert served.bar_time == bars.index[t]
    with pytest.raises(NotEnoughHistoryError, match=f"{required_bars(spec)} needed"):
        inputs_for_latest(bars.iloc[:100], spec)


def test_a_model_with_another_feature_spec_is_refused(trained: TrainedRepository) -> None:
    spec_path = trained.cpu / GRU / str(trained.version) / "feature_spec.json"
    spec = FeatureSpec.load(spec_path)
    check_compatible(spec, GRU)
    changed = msgspec.structs.replace(
        spec, fingerprint="0" * 16, window=32, feature_names=spec.feature_names[:-1]
    )
    with pytest.raises(FeatureSpecMismatchError, match=r"window 32 != 64.*make models"):
        check_compatible(changed, GRU)


async def test_new_version_loads_without_interrupting_serving(
    trained: TrainedRepository, model_server: TritonServer, tmp_path: Path
) -> None:
    spec = trained.models.spec
    seq = np.zeros((1, spec.window, spec.n_features), np.float32)
    client = grpc_aio.InferenceServerClient(f"127.0.0.1:{model_server.grpc_port}")
    failures: list[str] = []
    served_versions: set[str] = set()
    answered: list[str] = []  # the version of every answer, in order
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            tensor = grpc_aio.InferInput("SEQ", list(seq.shape), "FP32")
            tensor.set_data_from_numpy(seq)
            try:
                result = await client.infer(GRU, [tensor])
                answered.append(result.get_response().model_version)
                served_versions.add(answered[-1])
            except InferenceServerException as exc:
                failures.append(str(exc))

    workers = [asyncio.create_task(traffic()) for _ in range(4)]
    try:
        await until(lambda: len(answered) >= 20, what="traffic before the new version")
        versions = await asyncio.to_thread(export_profiles, trained.models, trained.root)
        await client.load_model(GRU)
        new = str(versions["cpu"])
        await until(lambda: answered[-20:].count(new) == 20, what="traffic on the new version")
        stop.set()
        await asyncio.gather(*workers)
        index = await client.get_model_repository_index()
    finally:
        stop.set()
        await client.close()
    assert failures == []
    assert str(versions["cpu"]) in served_versions
    ready = {(m.name, m.version) for m in index.models if m.state == "READY"}
    assert (GRU, str(versions["cpu"])) in ready


async def test_served_models_carry_the_pipeline_fingerprint(model_server: TritonServer) -> None:
    client = grpc_aio.InferenceServerClient(f"127.0.0.1:{model_server.grpc_port}")
    try:
        served = await verify_served_models(client)
    finally:
        await client.close()
    assert served == dict.fromkeys(FEATURE_MODELS, "5m")


def test_a_config_from_another_pipeline_is_refused() -> None:
    config = {
        "parameters": {
            "feature_fingerprint": {"string_value": "deadbeefdeadbeef"},
            "feature_timeframe": {"string_value": "5m"},
        }
    }
    with pytest.raises(FeatureSpecMismatchError, match=r"deadbeefdeadbeef.*make models"):
        check_config_fingerprint(config, GRU)
    with pytest.raises(FeatureSpecMismatchError, match="no feature fingerprint"):
        check_config_fingerprint({}, GRU)
