"""The real tritonserver from the pytriton wheel: a Python-backend model loaded in explicit
mode, inferred over HTTP and gRPC with exact values, and dynamic batching through one call."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpc_aio
import tritonclient.http as httpclient

from orchestrator.settings import TritonSettings

X = np.array([[1, 2, 3, 4], [-1.5, 0.25, 8, 1e3]], dtype=np.float32)


def test_explicit_mode_loads_only_what_was_asked(triton_settings: TritonSettings) -> None:
    client = httpclient.InferenceServerClient(triton_settings.http_url)
    assert client.is_server_ready()
    assert client.is_model_ready("smoke_affine")
    client.unload_model("smoke_affine")
    assert not client.is_model_ready("smoke_affine")
    client.load_model("smoke_affine")
    assert client.is_model_ready("smoke_affine")


def test_http_inference_exact(triton_settings: TritonSettings) -> None:
    client = httpclient.InferenceServerClient(triton_settings.http_url)
    tensor = httpclient.InferInput("X", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X, binary_data=True)
    result = client.infer("smoke_affine", [tensor])
    np.testing.assert_array_equal(result.as_numpy("Y"), 2 * X + 1)
    np.testing.assert_array_equal(result.as_numpy("ROW_SUM")[:, 0], [10.0, 1006.75])


def test_grpc_inference_exact(triton_settings: TritonSettings) -> None:
    client = grpcclient.InferenceServerClient(triton_settings.grpc_url)
    tensor = grpcclient.InferInput("X", list(X.shape), "FP32")
    tensor.set_data_from_numpy(X)
    result = client.infer("smoke_affine", [tensor])
    np.testing.assert_array_equal(result.as_numpy("Y"), 2 * X + 1)
    assert result.as_numpy("ROW_SUM").dtype == np.float64
    np.testing.assert_array_equal(result.as_numpy("ROW_SUM")[:, 0], [10.0, 1006.75])


async def test_concurrent_requests_each_get_their_own_rows(triton_settings: TritonSettings) -> None:
    import asyncio

    client = grpc_aio.InferenceServerClient(triton_settings.grpc_url)
    try:

        async def one(i: int) -> None:
            x = np.full((1 + i % 3, 4), float(i), dtype=np.float32)
            tensor = grpc_aio.InferInput("X", list(x.shape), "FP32")
            tensor.set_data_from_numpy(x)
            result = await client.infer("smoke_affine", [tensor])
            np.testing.assert_array_equal(result.as_numpy("Y"), 2 * x + 1)
            np.testing.assert_array_equal(result.as_numpy("ROW_SUM")[:, 0], 4.0 * i)

        await asyncio.gather(*(one(i) for i in range(48)))
    finally:
        await client.close()
