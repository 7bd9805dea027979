"""Rollback and forced promotion against a real Triton holding two versions of the model set:
admin only, every answer 200 and from one version while the switch happens, Triton, the
registry and config.pbtxt agreeing afterwards."""

from __future__ import annotations

import asyncio
import dataclasses
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import msgspec
import pytest
import tritonclient.grpc as grpcclient

from export.exporter import export_profiles
from orchestrator.api.app import create_app
from orchestrator.cli import build_parser, cmd_models
from orchestrator.devstack.triton import TritonServer
from orchestrator.inference.models import ENSEMBLE, config_parameter
from orchestrator.lifecycle.registry import ModelRegistry
from orchestrator.lifecycle.switch import version_spec
from orchestrator.marketdata.db import Database
from orchestrator.settings import ApiSettings, DatabaseSettings, Settings, TritonSettings
from tests.api.conftest import api_settings, served
from tests.conftest import TrainedRepository, append_bar, serve_triton, until

USER = {"X-API-Key": "user-key"}
ADMIN = {"X-API-Key": "admin-key"}
CLIENTS = 8


@pytest.fixture(scope="module")
def two_versions(
    trained: TrainedRepository, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TritonServer]:
    """A Triton over a copy of the suite's repository with one more version exported into it,
    whose feature spec differs (as a retrain's does: its own statistics and head)."""
    root = tmp_path_factory.mktemp("switch-repository")
    shutil.copytree(trained.cpu, root / "cpu", symlinks=True)
    spec = trained.models.spec
    head = msgspec.structs.replace(spec.head, train_mean=[m * 1.5 for m in spec.head.train_mean])
    newer = dataclasses.replace(trained.models, spec=msgspec.structs.replace(spec, head=head))
    export_profiles(newer, root, profiles=("cpu",))
    yield from serve_triton(root / "cpu", tmp_path_factory, "triton-switch")


def _versions(repository: Path) -> list[int]:
    return sorted(int(p.name) for p in (repository / ENSEMBLE).iterdir() if p.name.isdigit())


def _served_spec(server: TritonServer) -> str:
    """The spec the engine normalises with: the served version's own, as SignalModels reads it."""
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    parameters = client.get_model_config(ENSEMBLE, as_json=True)["config"]["parameters"]
    ready = _ready(server)
    named = parameters.get("serving_version", {}).get("string_value")
    served = named if named and int(named) in ready else str(max(ready))
    own = parameters.get(f"feature_spec_{served}", parameters["feature_spec"])
    return str(own["string_value"])


async def _answered_by(client: httpx.AsyncClient, version: int) -> bool:
    response = await client.get("/api/predict/BTCUSD", headers=USER)
    return bool(response.json().get("model_version") == str(version))


def _ready(server: TritonServer) -> list[int]:
    client = grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}")
    index = client.get_model_repository_index(as_json=True)["models"]
    return sorted(
        int(m["version"]) for m in index if m["name"] == ENSEMBLE and m.get("state") == "READY"
    )


@pytest.fixture
async def client(
    db: Database,
    db_settings: DatabaseSettings,
    two_versions: TritonServer,
    redis_flushed: str,
    loaded: TrainedRepository,
) -> AsyncIterator[httpx.AsyncClient]:
    """The app served by uvicorn (concurrent clients need a real server) over the two-version
    Triton, on an empty registry, with a user key and an admin key."""
    async with db.transaction() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM model_version_events")
        await cur.execute("DELETE FROM model_versions")
    keys = ApiSettings(
        internal_api_key="user-key", admin_api_key="admin-key", rate_limit_per_minute=1_000_000
    )
    settings = api_settings(db_settings, two_versions, redis_flushed, api=keys)
    triton = msgspec.structs.replace(
        settings.triton, model_repository=str(two_versions.model_repository)
    )
    app = create_app(msgspec.structs.replace(settings, triton=triton))
    async with (
        served(app) as port,
        httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=120) as http,
    ):
        yield http


async def test_rollback_under_load_then_promotion_back(
    client: httpx.AsyncClient,
    two_versions: TritonServer,
    db: Database,
    loaded: TrainedRepository,
) -> None:
    repository = two_versions.model_repository
    previous, newest = _versions(repository)[-2:]
    listed = (await client.get("/api/models", headers=USER)).json()["sets"]
    assert next(s for s in listed if s["model_set"] == ENSEMBLE)["champion"] == newest
    path = f"/api/models/{ENSEMBLE}"
    # The newest was never champion before, so promote the previous one first, then the
    # newest again: the newest's rollback target is then `previous`.
    promoted = await client.post(
        f"{path}/promote", json={"version": previous, "reason": "set up"}, headers=ADMIN
    )
    assert promoted.status_code == 200, promoted.text
    back = await client.post(
        f"{path}/promote", json={"version": newest, "reason": "set up"}, headers=ADMIN
    )
    assert back.json()["champion"] == newest
    # A promotion serves from the next bar on: that bar closes, then every answer is the newest.
    bars = loaded.data[0].bars
    await append_bar(db, bars, minutes=5)
    await until(lambda: _answered_by(client, newest), what="the next bar answered by the newest")

    answers: list[tuple[int, str]] = []
    stop = asyncio.Event()

    async def traffic() -> None:
        while not stop.is_set():
            response = await client.get("/api/predict/BTCUSD", headers=USER)
            version = response.json().get("model_version", "") if response.is_success else ""
            answers.append((response.status_code, version))

    workers = [asyncio.create_task(traffic()) for _ in range(CLIENTS)]
    try:
        await until(lambda: len(answers) >= 40, what="traffic on the champion")
        refused = await client.post(f"{path}/rollback", json={"reason": "x" * 5}, headers=USER)
        assert refused.status_code == 403
        assert "admin scope" in refused.json()["message"]
        anonymous = await client.post(f"{path}/rollback", json={"reason": "no key"})
        assert anonymous.status_code == 401
        # The previous champion is on standby in Triton: the rollback only narrows the policy.
        assert _ready(two_versions) == [previous, newest]
        started = time.perf_counter()
        rolled = await client.post(
            f"{path}/rollback", json={"reason": "live skill fell"}, headers=ADMIN
        )
        print(f"rollback under {CLIENTS} clients: {time.perf_counter() - started:.3f} s")
        assert rolled.status_code == 200, rolled.text
        assert rolled.json()["champion"] == previous
        await until(
            lambda: [v for _, v in answers[-CLIENTS * 3 :]] == [str(previous)] * (CLIENTS * 3),
            what="every client answered by the previous champion",
        )
    finally:
        stop.set()
        await asyncio.gather(*workers)
    assert {status for status, _ in answers} == {200}
    assert {version for _, version in answers} == {str(previous), str(newest)}
    assert _ready(two_versions) == [previous]
    config = (repository / ENSEMBLE / "config.pbtxt").read_text()
    assert f"version_policy {{ specific {{ versions: [ {previous} ] }} }}" in config
    # The version's own feature spec came along, into Triton and into config.pbtxt.
    previous_spec = version_spec(repository, ENSEMBLE, previous)
    assert previous_spec is not None
    assert previous_spec != version_spec(repository, ENSEMBLE, newest)
    assert _served_spec(two_versions) == previous_spec
    assert config_parameter("feature_spec", previous_spec) in config
    entry = rolled.json()
    assert entry["events"][0]["reason"] == "rollback: live skill fell"
    assert entry["events"][0]["actor"].startswith("api admin")

    # Forced promotion back to the newest; a version that does not exist is a 404.
    forward = await client.post(
        f"{path}/promote", json={"version": newest, "reason": "fixed upstream"}, headers=ADMIN
    )
    assert forward.json()["champion"] == newest
    # The champion it replaced stays on standby and answers the bar already closed; the
    # promoted one answers from the next bar on.
    assert _ready(two_versions) == [previous, newest]
    assert _served_spec(two_versions) == version_spec(repository, ENSEMBLE, newest)
    assert await _answered_by(client, previous)
    await append_bar(db, bars, minutes=10)
    await until(lambda: _answered_by(client, newest), what="the next bar answered by the newest")
    missing = await client.post(
        f"{path}/promote", json={"version": 999, "reason": "typo"}, headers=ADMIN
    )
    assert missing.status_code == 404
    assert "no version 999" in missing.json()["message"]
    assert _ready(two_versions) == [previous, newest]


def _cli(settings: Settings, *argv: str) -> None:
    args = build_parser().parse_args(["models", *argv])
    assert cmd_models(args, settings) == 0


async def test_the_command_line_switches_like_the_api(
    db: Database,
    db_settings: DatabaseSettings,
    two_versions: TritonServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    async with db.transaction() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM model_version_events")
        await cur.execute("DELETE FROM model_versions")
    repository = two_versions.model_repository
    settings = Settings(
        db=db_settings,
        triton=TritonSettings(
            grpc_port=two_versions.grpc_port,
            http_port=two_versions.http_port,
            model_repository=str(repository),
        ),
        api=ApiSettings(),
    )
    previous, newest = _versions(repository)[-2:]
    await asyncio.to_thread(_cli, settings, "sync")
    for version in (previous, newest):
        await asyncio.to_thread(
            _cli, settings, "promote", "--set", ENSEMBLE, "--version", str(version), "--reason", "x"
        )
    await asyncio.to_thread(_cli, settings, "rollback", "--set", ENSEMBLE, "--reason", "by hand")
    assert f"{ENSEMBLE} v{previous} serves now (rollback: by hand)" in capsys.readouterr().out
    assert _ready(two_versions) == [previous]
    champion = [v for v in await ModelRegistry(db).versions(ENSEMBLE) if v.status == "champion"]
    assert [v.version for v in champion] == [previous]
