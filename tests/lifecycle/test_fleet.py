"""A switch reaches every Triton replica (TRITON_PEERS): two real tritonservers over one shared
model repository, as Kubernetes replicas over one volume, promoted and rolled back together; one
that is down fails the switch and leaves the other as it was."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import pytest
import tritonclient.grpc.aio as grpc_aio

from export.exporter import export_profiles
from orchestrator.devstack.triton import TritonServer
from orchestrator.errors import ModelsUnavailableError, SettingsError
from orchestrator.inference.client import SignalModels
from orchestrator.inference.models import ENSEMBLE
from orchestrator.lifecycle.exported import exported_versions
from orchestrator.lifecycle.fleet import resolve
from orchestrator.lifecycle.registry import ModelRegistry
from orchestrator.lifecycle.service import Lifecycle
from orchestrator.lifecycle.switch import served_versions
from orchestrator.marketdata.db import Database
from orchestrator.settings import _peers
from tests.conftest import TrainedRepository, serve_triton

TIMEOUT_S = 30.0


def test_peers_take_the_grpc_port_and_refuse_a_bad_one() -> None:
    assert _peers("triton-peers", 8001) == ("triton-peers:8001",)
    assert _peers(" a:9001 , b ,", 8001) == ("a:9001", "b:8001")
    assert _peers("", 8001) == ()
    with pytest.raises(SettingsError, match="port is not a number"):
        _peers("a:grpc", 8001)


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
    root = tmp_path_factory.mktemp("fleet-repository")
    shutil.copytree(trained.cpu, root / "cpu", symlinks=True)
    export_profiles(trained.models, root, profiles=("cpu",))
    first = serve_triton(root / "cpu", tmp_path_factory, "triton-fleet-a")
    second = serve_triton(root / "cpu", tmp_path_factory, "triton-fleet-b")
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
    async with clean_db.transaction() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM model_version_events")
        await cur.execute("DELETE FROM model_versions")
    registry = ModelRegistry(clean_db)
    entries = [e for e in exported_versions(repository) if e.model_set == ENSEMBLE][-2:]
    for entry in entries:
        await registry.register(entry, "test", "exported")
    old, new = entries[0].version, entries[1].version
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
