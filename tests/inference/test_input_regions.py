"""Request inputs through shared memory (orchestrator/inference/input_regions.py), against the
real Triton: the same answers as inside the message, a Triton that forgot its regions (a
restart) still answers, and nothing is left in /dev/shm once closed."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc.aio as grpc_aio

from orchestrator.devstack.triton import TritonServer
from orchestrator.features.online import ModelInputs, inputs_for_latest
from orchestrator.inference.client import EnsembleOutput, SignalModels
from orchestrator.inference.input_regions import InputRegions
from tests.conftest import TrainedRepository

TIMEOUT_S = 30.0


@pytest.fixture
async def client(model_server: TritonServer) -> AsyncIterator[grpc_aio.InferenceServerClient]:
    client = grpc_aio.InferenceServerClient(f"127.0.0.1:{model_server.grpc_port}")
    yield client
    await client.close()


def _inputs(trained: TrainedRepository, rows: int) -> list[ModelInputs]:
    """The newest bars' inputs of both symbols, `rows` windows ending one bar apart."""
    spec = trained.models.spec
    out = []
    for k in range(rows):
        item = trained.data[k % len(trained.data)]
        out.append(inputs_for_latest(item.bars.iloc[: len(item.bars) - k], spec))
    return out


def _in_dev_shm(name: str) -> bool:
    return Path("/dev/shm", name).exists()


def _registered(status: dict[str, dict[str, dict[str, str]]]) -> set[str]:
    """The region names a shared-memory status answer lists."""
    return {region["name"] for region in status.get("regions", {}).values()}


def _same(a: EnsembleOutput, b: EnsembleOutput) -> None:
    for name in ("gru_range", "transformer_range", "p_long", "p_short", "confidence"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert a.model_version == b.model_version


@pytest.fixture
async def regions(client: grpc_aio.InferenceServerClient) -> AsyncIterator[InputRegions]:
    regions = InputRegions(client)
    yield regions
    await regions.close(TIMEOUT_S)  # again, where a test closed them itself: nothing left to do


@pytest.fixture
def models(client: grpc_aio.InferenceServerClient, regions: InputRegions) -> SignalModels:
    return SignalModels(client, TIMEOUT_S, input_regions=regions)


async def test_inputs_through_shared_memory_get_the_message_s_answers(
    trained: TrainedRepository, client: grpc_aio.InferenceServerClient, regions: InputRegions
) -> None:
    by_region = SignalModels(client, TIMEOUT_S, input_regions=regions)
    by_message = SignalModels(client, TIMEOUT_S)
    for rows in (1, 7, 64):
        inputs = _inputs(trained, rows)
        _same(await by_region.infer(inputs), await by_message.infer(inputs))
    assert regions.requests == 3
    names = regions.names
    assert names
    assert all(_in_dev_shm(name) for name in names)
    await regions.close(TIMEOUT_S)
    assert not any(_in_dev_shm(name) for name in names)


async def test_a_triton_that_forgot_the_regions_still_answers_and_they_are_registered_again(
    trained: TrainedRepository,
    client: grpc_aio.InferenceServerClient,
    regions: InputRegions,
    models: SignalModels,
) -> None:
    inputs = _inputs(trained, 4)
    first = await models.infer(inputs)
    await client.unregister_system_shared_memory()  # what a restarted Triton knows: none
    _same(await models.infer(inputs), first)  # refused for its region, then sent by message
    assert regions.requests == 2
    _same(await models.infer(inputs), first)  # through a region registered anew
    assert regions.requests == 3
    status = await client.get_system_shared_memory_status(as_json=True)
    assert _registered(status) == set(regions.names)


async def test_a_region_triton_refuses_sends_the_inputs_in_the_message_for_a_while(
    trained: TrainedRepository,
    client: grpc_aio.InferenceServerClient,
    regions: InputRegions,
    models: SignalModels,
) -> None:
    inputs = _inputs(trained, 3)
    first = await models.infer(inputs)
    assert regions.requests == 1
    # Registering a name Triton already holds is refused, as a region it cannot open is.
    regions.forget_registrations()
    _same(await models.infer(inputs), first)
    _same(await models.infer(inputs), first)  # within REGISTER_RETRY_S: no new attempt
    assert regions.requests == 1
    assert regions.last_refusal is not None
    assert regions.last_refusal.startswith("Triton did not register a region")
    names = regions.names
    await regions.close(TIMEOUT_S)
    status = await client.get_system_shared_memory_status(as_json=True)
    assert not _registered(status) & set(names)  # closed: none left registered in Triton
