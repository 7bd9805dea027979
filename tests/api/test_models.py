"""GET /api/models against the real MariaDB, Triton and Redis: the registry of the repository the
suite's Triton serves, the champion being the version Triton serves."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import pytest
from litestar.testing import AsyncTestClient

from orchestrator.api.app import create_app
from orchestrator.devstack.triton import TritonServer
from orchestrator.marketdata.db import Database
from orchestrator.settings import DatabaseSettings
from tests.api.conftest import api_settings


@pytest.fixture
async def client(
    db: Database, db_settings: DatabaseSettings, model_server: TritonServer, redis_flushed: str
) -> AsyncIterator[AsyncTestClient]:  # type: ignore[type-arg]
    """The app registering the repository the suite's Triton serves, on an empty registry."""
    async with db.transaction() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM model_version_events")
        await cur.execute("DELETE FROM model_versions")
    settings = api_settings(db_settings, model_server, redis_flushed)
    triton = msgspec.structs.replace(
        settings.triton, model_repository=str(model_server.model_repository)
    )
    app = create_app(msgspec.structs.replace(settings, triton=triton))
    async with AsyncTestClient(app) as test_client:
        yield test_client


async def test_models_lists_each_served_set_with_its_champion(
    client: AsyncTestClient,  # type: ignore[type-arg]
    model_server: TritonServer,
) -> None:
    response = await client.get("/api/models")
    assert response.status_code == 200, response.text
    sets = {entry["model_set"]: entry for entry in response.json()["sets"]}
    repository = model_server.model_repository
    ensembles = sorted(p.name for p in repository.glob("signal_ensemble*") if p.is_dir())
    assert sorted(sets) == ensembles
    for name, entry in sets.items():
        newest = max(int(p.name) for p in (repository / name).iterdir() if p.name.isdigit())
        assert entry["champion"] == newest
        assert entry["challenger"] is None
        champion = next(v for v in entry["versions"] if v["version"] == newest)
        assert champion["status"] == "champion"
        assert set(champion["card"]["served_skill"]) == {
            "scalping",
            "intraday",
            "swing",
            "position",
        }
        assert champion["trained_through"] is not None
        moves = [(e["version"], e["from_status"], e["to_status"]) for e in entry["events"]]
        assert moves[0] == (newest, "candidate", "champion")
    # Asking again registers nothing twice.
    again = await client.get("/api/models")
    assert [len(s["events"]) for s in again.json()["sets"]] == [
        len(s["events"]) for s in response.json()["sets"]
    ]
