"""PyTorch vs ONNX Runtime vs TorchScript vs Triton-served outputs, batch sizes 1, 7 and 64;
XGBoost in-process vs Triton-served."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import tritonclient.grpc as grpcclient

from export.catalog import ENSEMBLE, GRU, META, TRANSFORMER, XGB_LONG, XGB_SHORT
from export.train import build_inputs, classifier_proba, collect_samples
from orchestrator.devstack.triton import TritonServer
from tests.models.conftest import TrainedRepository

ATOL = 1e-4


def _inputs(trained: TrainedRepository, n: int) -> tuple[np.ndarray, np.ndarray]:
    samples = collect_samples(trained.data)
    pick = samples.subset(
        np.isin(np.arange(len(samples)), np.linspace(0, len(samples) - 1, n).astype(int))
    )
    inputs = build_inputs(trained.data, pick, trained.models.spec)
    return inputs.seq, inputs.tab


def _triton(server: TritonServer, model: str, name: str, x: np.ndarray, output: str) -> np.ndarray:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    tensor = grpcclient.InferInput(name, list(x.shape), "FP32")
    tensor.set_data_from_numpy(x)
    return client.infer(model, [tensor]).as_numpy(output)


@pytest.mark.parametrize("batch", [1, 7, 64])
@pytest.mark.parametrize("name", [GRU, TRANSFORMER])
def test_range_models_agree_everywhere(
    trained: TrainedRepository, model_server: TritonServer, name: str, batch: int
) -> None:
    seq, _ = _inputs(trained, batch)
    net = trained.models.gru if name == GRU else trained.models.transformer
    with torch.no_grad():
        reference = net(torch.from_numpy(seq)).numpy()
    version_dir = trained.gpu / name / str(trained.version)
    session = ort.InferenceSession(
        str(version_dir / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    onnx_out = session.run(["RANGE"], {"SEQ": seq})[0]
    scripted = torch.jit.load(
        str(trained.gpu / f"{name}_torchscript" / str(trained.version) / "model.pt")
    )
    with torch.no_grad():
        script_out = scripted(torch.from_numpy(seq)).numpy()
    served = _triton(model_server, name, "SEQ", seq, "RANGE")
    assert reference.shape == (batch, 8)
    np.testing.assert_allclose(onnx_out, reference, atol=ATOL)
    np.testing.assert_allclose(script_out, reference, atol=ATOL)
    np.testing.assert_allclose(served, reference, atol=ATOL)


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_xgboost_in_process_equals_served(
    trained: TrainedRepository, model_server: TritonServer, batch: int
) -> None:
    _, tab = _inputs(trained, batch)
    for name, booster in (
        (XGB_LONG, trained.models.xgb_long),
        (XGB_SHORT, trained.models.xgb_short),
    ):
        served = _triton(model_server, name, "input__0", tab, "output__0")
        np.testing.assert_allclose(served, classifier_proba(booster, tab), atol=1e-6)


def test_metamodel_onnx_equals_pytorch(trained: TrainedRepository) -> None:
    rng = np.random.default_rng(0)
    n = 7
    gru, tf = rng.gamma(2, 1, (n, 8)).astype(np.float32), rng.gamma(2, 1, (n, 8)).astype(np.float32)
    p = rng.uniform(0, 1, (n, 2)).astype(np.float32)
    p_long, p_short = np.stack([1 - p[:, 0], p[:, 0]], 1), np.stack([1 - p[:, 1], p[:, 1]], 1)
    ctx = rng.normal(size=(n, len(trained.models.spec.context_features))).astype(np.float32)
    with torch.no_grad():
        conf, direction = trained.models.meta(
            *(torch.from_numpy(a) for a in (gru, tf, p_long, p_short, ctx))
        )
    session = ort.InferenceSession(
        str(trained.cpu / META / str(trained.version) / "model.onnx"),
        providers=["CPUExecutionProvider"],
    )
    out = session.run(
        ["CONFIDENCE", "DIRECTION"],
        {"GRU_RANGE": gru, "TF_RANGE": tf, "P_LONG": p_long, "P_SHORT": p_short, "CTX": ctx},
    )
    np.testing.assert_allclose(out[0], conf.numpy(), atol=1e-6)
    np.testing.assert_array_equal(out[1], direction.numpy())
    np.testing.assert_array_equal(out[1][:, 0], np.where(p[:, 0] >= p[:, 1], 1.0, -1.0))


@pytest.mark.parametrize("batch", [1, 7, 64])
def test_fused_cpu_ensemble_equals_its_members_chained(
    trained: TrainedRepository, model_server: TritonServer, batch: int
) -> None:
    """The cpu profile's fused signal_ensemble (one Python-backend model on the real Triton)
    answers what its five served members answer when chained by hand (the gpu profile's
    native ensemble wires the same steps)."""
    seq, tab = _inputs(trained, batch)
    ctx = np.random.default_rng(batch).normal(size=(batch, 5)).astype(np.float32)
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{model_server.grpc_port}")
    tensors = []
    for name, array in (("SEQ", seq), ("TAB", tab), ("CTX", ctx)):
        tensor = grpcclient.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    fused = client.infer(ENSEMBLE, tensors)
    gru = _triton(model_server, GRU, "SEQ", seq, "RANGE")
    tfm = _triton(model_server, TRANSFORMER, "SEQ", seq, "RANGE")
    p_long = _triton(model_server, XGB_LONG, "input__0", tab, "output__0")
    p_short = _triton(model_server, XGB_SHORT, "input__0", tab, "output__0")
    session = ort.InferenceSession(
        str(trained.cpu / META / str(trained.version) / "model.onnx"),
        providers=["CPUExecutionProvider"],
    )
    confidence, direction = session.run(
        ["CONFIDENCE", "DIRECTION"],
        {"GRU_RANGE": gru, "TF_RANGE": tfm, "P_LONG": p_long, "P_SHORT": p_short, "CTX": ctx},
    )
    expected = {
        "GRU_RANGE": gru,
        "TF_RANGE": tfm,
        "P_LONG": p_long,
        "P_SHORT": p_short,
        "CONFIDENCE": confidence,
        "DIRECTION": direction,
    }
    for name, value in expected.items():
        np.testing.assert_allclose(fused.as_numpy(name), value, atol=1e-6, err_msg=name)
    config = client.get_model_config(ENSEMBLE, as_json=True)["config"]
    assert config["backend"] == "fused_ensemble"  # one fused model, not Triton's five-step one


async def test_fused_ensemble_refuses_only_the_request_with_nan(
    trained: TrainedRepository, model_server: TritonServer
) -> None:
    """Requests sent together (one dynamic batch when they meet in the queue): the one carrying
    NaN gets INVALID_ARG, the others their outputs."""
    import asyncio

    import tritonclient.grpc.aio as grpc_aio
    from tritonclient.utils import InferenceServerException

    seq, tab = _inputs(trained, 8)
    ctx = np.zeros((8, 5), np.float32)
    poisoned = seq.copy()
    poisoned[3, 10, 4] = np.nan
    client = grpc_aio.InferenceServerClient(f"127.0.0.1:{model_server.grpc_port}")

    async def one(k: int) -> object:
        tensors = []
        for name, array in (
            ("SEQ", poisoned[k : k + 1]),
            ("TAB", tab[k : k + 1]),
            ("CTX", ctx[:1]),
        ):
            tensor = grpc_aio.InferInput(name, list(array.shape), "FP32")
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        try:
            return (await client.infer(ENSEMBLE, tensors)).as_numpy("GRU_RANGE")
        except InferenceServerException as exc:
            return exc

    try:
        answers = await asyncio.gather(*(one(k) for k in range(8)))
    finally:
        await client.close()
    assert isinstance(answers[3], InferenceServerException)
    assert "NaN or infinity" in str(answers[3])
    expected = _triton(model_server, GRU, "SEQ", seq, "RANGE")
    for k, answer in enumerate(answers):
        if k != 3:
            np.testing.assert_allclose(answer, expected[k : k + 1], atol=1e-6)


def test_torchscript_range_models_carry_no_device(tmp_path: Path) -> None:
    """The gpu profile serves the TorchScript twins on CUDA: a traced constant device ("cpu")
    would pin a tensor to the CPU and fail there (seen on an H200, docs/benchmarks.md)."""
    from export.exporter import export_torchscript
    from export.networks import GRURange, TransformerRange

    window, n_features = 16, 5
    for name, net in (
        ("gru", GRURange(n_features, 8)),
        ("transformer", TransformerRange(n_features, 8, window)),
    ):
        path = tmp_path / f"{name}.pt"
        export_torchscript(net.eval(), path, window, n_features)
        loaded = torch.jit.load(str(path))
        assert 'device("cpu")' not in loaded.code, f"{name}: {loaded.code}"
        assert loaded(torch.zeros(7, window, n_features)).shape == (7, 8)
