"""Switching an ensemble whose steps run their models' latest version (the gpu profile's
layout), against a real Triton: its step models follow the served version, a challenger beside
it is refused with the way out, and a restart from the repository serves the same version.

The toy models answer with the version Triton runs, so a mix of versions shows in the answer.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc.aio as grpc_aio

from orchestrator.devstack.triton import TritonServer
from orchestrator.lifecycle.switch import (
    Loaded,
    VersionLoadError,
    pin_profiles,
    serve_version,
    served_versions,
)
from tests.conftest import serve_triton

ENSEMBLE, STEP = "toy_ensemble", "toy_step"
TIMEOUT_S = 30.0

_STEP_MODEL = """
import numpy as np
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        self.version = float(args["model_version"])

    def execute(self, requests):
        responses = []
        for request in requests:
            x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
            answer = np.full(x.shape, self.version, dtype=np.float32)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("VERSION", answer)]))
        return responses
"""


def _toy_repository(root: Path, versions: tuple[int, ...]) -> Path:
    """A `cpu` profile with one plain model and a `gpu` profile holding the ensemble layout."""
    (root / "cpu").mkdir(parents=True)
    gpu = root / "gpu"
    io = (
        'input [ { name: "X", data_type: TYPE_FP32, dims: [ 1 ] } ]\n'
        'output [ { name: "VERSION", data_type: TYPE_FP32, dims: [ 1 ] } ]\n'
    )
    (gpu / STEP).mkdir(parents=True)
    (gpu / STEP / "config.pbtxt").write_text(
        f'name: "{STEP}"\nbackend: "python"\nmax_batch_size: 8\n{io}'
        "instance_group [ { count: 1, kind: KIND_CPU } ]\n"
        "version_policy { latest { num_versions: 1 } }\n"
    )
    (gpu / ENSEMBLE).mkdir()
    (gpu / ENSEMBLE / "config.pbtxt").write_text(
        f'name: "{ENSEMBLE}"\nplatform: "ensemble"\nmax_batch_size: 8\n{io}'
        "ensemble_scheduling {\n  step [\n"
        f'    {{ model_name: "{STEP}" model_version: -1\n'
        '      input_map { key: "X" value: "X" }\n'
        '      output_map { key: "VERSION" value: "VERSION" } }\n'
        "  ]\n}\n"
    )
    for version in versions:
        (gpu / STEP / str(version)).mkdir()
        (gpu / STEP / str(version) / "model.py").write_text(_STEP_MODEL)
        (gpu / ENSEMBLE / str(version)).mkdir()
    return gpu


@pytest.fixture
def toy_triton(tmp_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    yield from serve_triton(_toy_repository(tmp_path, (1, 2)), tmp_path_factory, "triton-toy")


async def _answer(client: grpc_aio.InferenceServerClient) -> float:
    tensor = grpc_aio.InferInput("X", [1, 1], "FP32")
    tensor.set_data_from_numpy(np.zeros((1, 1), dtype=np.float32))
    result = await client.infer(ENSEMBLE, [tensor], client_timeout=TIMEOUT_S)
    return float(result.as_numpy("VERSION")[0, 0])


async def test_an_ensemble_serves_one_version_with_its_step_models(
    toy_triton: TritonServer,
) -> None:
    repository = toy_triton.model_repository
    elsewhere = repository.parent / "elsewhere" / "cpu"  # Triton's files on another machine
    step_config = repository / STEP / "config.pbtxt"
    client = grpc_aio.InferenceServerClient(f"127.0.0.1:{toy_triton.grpc_port}")
    try:
        assert await _answer(client) == 2.0  # the export's `latest`: the newest version

        # A rollback to v1 where the engine cannot pin Triton's files: loading the ensemble
        # reloads its step model from a config that says `latest`, so it is pinned again after.
        await serve_version(client, ENSEMBLE, Loaded(1, standby=(2,)), TIMEOUT_S, elsewhere)
        assert await served_versions(client, STEP, TIMEOUT_S) == [1]
        assert await served_versions(client, ENSEMBLE, TIMEOUT_S) == [1]
        assert await _answer(client) == 1.0  # not v1's ensemble running v2's networks

        # Where the files are at hand, the step model's config is pinned before the load.
        await serve_version(client, ENSEMBLE, Loaded(2), TIMEOUT_S, repository)
        assert await served_versions(client, STEP, TIMEOUT_S) == [2]
        assert "versions: [ 2 ]" in step_config.read_text()
        assert await _answer(client) == 2.0

        # A challenger cannot run beside it: refused, and v2 still answers.
        with pytest.raises(VersionLoadError, match="serves them side by side"):
            await serve_version(client, ENSEMBLE, Loaded(2, challenger=1), TIMEOUT_S, repository)
        assert await _answer(client) == 2.0

        # A version whose files are gone: refused, the step model and its config back on v2.
        with pytest.raises(VersionLoadError):
            await serve_version(client, ENSEMBLE, Loaded(3), TIMEOUT_S, repository)
        assert await served_versions(client, STEP, TIMEOUT_S) == [2]
        assert "versions: [ 2 ]" in step_config.read_text()
        assert await _answer(client) == 2.0
    finally:
        await client.close()

    # What a restart reads: the repository pinned to the served version, step models included.
    pin_profiles(repository.parent / "cpu", ENSEMBLE, Loaded(1, challenger=2, standby=(2,)))
    for name in (ENSEMBLE, STEP):
        config = (repository / name / "config.pbtxt").read_text()
        assert "version_policy { specific { versions: [ 1 ] } }" in config
    toy_triton.stop()
    toy_triton.start()
    client = grpc_aio.InferenceServerClient(f"127.0.0.1:{toy_triton.grpc_port}")
    try:
        assert await _answer(client) == 1.0
    finally:
        await client.close()
