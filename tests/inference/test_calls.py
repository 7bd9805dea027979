"""An inference whose caller is cancelled still ends on the server, and closing its client waits
for it (Triton 2.51 can crash on a cancelled inference: orchestrator/inference/calls.py)."""

from __future__ import annotations

import asyncio

import numpy as np
import tritonclient.grpc.aio as grpc_aio

from export.catalog import GRU
from orchestrator.devstack.triton import TritonServer
from orchestrator.inference.calls import close_client, uncancelled


async def test_a_cancelled_caller_leaves_its_inference_to_finish(
    model_server: TritonServer,
) -> None:
    client = grpc_aio.InferenceServerClient(f"127.0.0.1:{model_server.grpc_port}")
    metadata = await client.get_model_metadata(GRU, as_json=True)
    shape = [1 if d == "-1" else int(d) for d in metadata["inputs"][0]["shape"]]
    seq = np.zeros([64, *shape[1:]], dtype=np.float32)
    tensor = grpc_aio.InferInput("SEQ", list(seq.shape), "FP32")
    tensor.set_data_from_numpy(seq)

    answers: list[np.ndarray] = []
    started = asyncio.Event()

    async def infer() -> None:
        started.set()
        result = await client.infer(GRU, [tensor], client_timeout=30.0)
        answers.append(result.as_numpy("RANGE"))

    caller = asyncio.create_task(uncancelled(client, infer()))
    await started.wait()
    caller.cancel()
    assert (await asyncio.gather(caller, return_exceptions=True))[0].__class__ is (
        asyncio.CancelledError
    )
    assert answers == []  # the caller gave up before the answer came
    await close_client(client, timeout_s=30.0)
    # The request ran to its end (no cancellation reached Triton) before the channel closed.
    assert len(answers) == 1
    assert answers[0].shape[0] == 64
    assert np.isfinite(answers[0]).all()
