"""A switch reaches every Triton replica (TRITON_PEERS): two real tritonservers over one shared
model repository, as Kubernetes replicas over one volume, promoted and rolled back together; one
that is down fails the switch and leaves the other as it was."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import tritonclient.grpc.aio as grpc_aio

from orchestrator.devstack.triton import TritonServer
from orchestrator.errors import ModelsUnavailableError, SettingsError
from orchestrator.inference.client import SignalModels
from orchestrator.inference.models import ENSEMBLE
from orchestrator.lifecycle.fleet import resolve
from orchestrator.lifecycle.service import Lifecycle
from orchestrator.lifecycle.switch import served_versions
from orchestrator.marketdata.db import Database
from orchestrator.settings import TritonSettings
from tests.conftest import TrainedRepository, serve_triton
from tests.lifecycle.conftest import registered, with_second_version

TIMEOUT_S = 30.0


@pytest.mark.parametrize(
    ("raw", "peers"),
    [("triton-peers", ("triton-peers:8001",)), (" a:9001 , b ,", ("a:9001", "b:8001")), ("", ())],
)
def test_peers_take_the_grpc_port(
    monkeypatch: pytest.MonkeyPatch, raw: str, peers: tuple[str, ...]
) -> None:
    monkeypatch.setenv("TRITON_GRPC_PORT", "8001")
    monkeypatch.setenv("TRITON_PEERS", raw)
    assert TritonSettings.from_env().peers == peers


def test_a_peer_whose_port_is_not_a_number_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_PEERS", "a:grpc")
    with pytest.raises(SettingsError, match="port is not a number"):
        TritonSettings.from_env()


async def test_each_address_is_resolved_once() -> None:
    assert await resolve(("127.0.0.1:8001", "127.0.0.1:8001", "127.0.0.1:9001")) == [
        "127.0.0.1:8001",
        "127.0.0.1:9001",
    ]
    with pytest.raises(ModelsUnavailableError, match="does not resolve"):
        await resolve(("no-such-host.invalid:8001",))


@pytest.fixture(scope="module")
def replicas(
    trained: TrainedRepository, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[TritonServer, TritonServer]]:
    """Two Tritons over one repository holding two versions of every model."""
    repository = with_second_version(trained, tmp_path_factory, "fleet-repository")
    first = serve_triton(repository, tmp_path_factory, "triton-fleet-a")
    second = serve_triton(repository, tmp_path_factory, "triton-fleet-b")
    servers = (next(first), next(second))
    yield servers
    for generator in (first, second):
        next(generator, None)


async def _state(server: TritonServer) -> tuple[list[int], str]:
    """(ready versions, the version the engine serves) of the ensemble on `server`."""
    client = grpc_aio.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    try:
        ready = await served_versions(client, ENSEMBLE, TIMEOUT_S)
        return ready, await SignalModels(client, TIMEOUT_S, ENSEMBLE).served_version()
    finally:
        await client.close()


async def test_promotion_and_rollback_reach_every_replica(
    clean_db: Database, replicas: tuple[TritonServer, TritonServer]
) -> None:
    a, b = replicas
    repository = a.model_repository
    registry, (old, new) = await registered(clean_db, repository)
    await registry.move(ENSEMBLE, new, "champion", "test", "the newest serves")
    assert await _state(a) == await _state(b) == ([new], str(new))

    triton = grpc_aio.InferenceServerClient(f"127.0.0.1:{a.grpc_port}")  # one replica's address
    peers = (f"127.0.0.1:{a.grpc_port}", f"127.0.0.1:{b.grpc_port}")
    try:
        lifecycle = Lifecycle(registry, triton, repository, TIMEOUT_S, peers)
        await lifecycle.promote(ENSEMBLE, old, "test", "back to the first")
        # Both serve it, the replaced champion on standby on both.
        assert await _state(a) == await _state(b) == ([old, new], str(old))

        await lifecycle.rollback(ENSEMBLE, "test", "the first was worse")
        assert await _state(a) == await _state(b) == ([new], str(new))

        b.stop()  # one replica away: the switch fails and the other is put back as it was
        with pytest.raises(ModelsUnavailableError):
            await lifecycle.promote(ENSEMBLE, old, "test", "while one replica is away")
        assert await _state(a) == ([new], str(new))
        champion = next(v for v in await registry.versions_of(ENSEMBLE) if v.status == "champion")
        assert champion.version == new
    finally:
        await triton.close()
        if not b.is_running():
            b.start()
