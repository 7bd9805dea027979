"""The committed TypeScript types (types/ml-engine.d.ts) are what openapi-typescript generates
from the running app's /schema/openapi.json; any API change without `make types` fails here."""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import httpx
import msgspec

from orchestrator.api.app import create_app
from orchestrator.settings import (
    ApiSettings,
    DatabaseSettings,
    RedisSettings,
    Settings,
    TritonSettings,
)
from tests.api.conftest import served
from tests.conftest import PROJECT_ROOT
from tests.gateway.conftest import GATEWAY_DIR

TYPES = PROJECT_ROOT / "types"
FIX = "run `make types` and commit types/ (the API changed since they were generated)"


async def _served_schema(db_settings: DatabaseSettings, redis_url: str) -> object:
    redis = RedisSettings(url=redis_url)
    app = create_app(
        Settings(db=db_settings, triton=TritonSettings(), api=ApiSettings(), redis=redis)
    )
    async with served(app) as port, httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/schema/openapi.json")
    assert response.status_code == 200
    return msgspec.json.decode(response.content)


def test_typescript_types_match_the_running_apps_schema(
    db_settings: DatabaseSettings, redis_url: str, gateway_build: Path, tmp_path: Path
) -> None:
    schema = asyncio.run(_served_schema(db_settings, redis_url))
    document = msgspec.json.format(msgspec.json.encode(schema, order="sorted"), indent=2) + b"\n"
    assert document == (TYPES / "openapi.json").read_bytes(), FIX

    (tmp_path / "openapi.json").write_bytes(document)
    generated = tmp_path / "ml-engine.d.ts"
    subprocess.run(
        [
            str(GATEWAY_DIR / "node_modules" / ".bin" / "openapi-typescript"),
            str(tmp_path / "openapi.json"),
            "-o",
            str(generated),
        ],
        check=True,
        capture_output=True,
    )
    assert generated.read_text() == (TYPES / "ml-engine.d.ts").read_text(), FIX
