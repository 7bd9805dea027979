"""`ml-engine models list|sync`: the model registry from a terminal."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import msgspec

from orchestrator.lifecycle.exported import sync_registry
from orchestrator.lifecycle.registry import ModelRegistry
from orchestrator.lifecycle.views import model_sets, render
from orchestrator.marketdata.db import Database
from orchestrator.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "sync"])
    parser.add_argument(
        "--model-repository",
        help="sync: the repository to register (default: $MODEL_REPOSITORY)",
    )
    parser.add_argument("--json", action="store_true", help="list: the API's JSON instead")


async def _run(args: argparse.Namespace, settings: Settings) -> int:
    db = await Database.connect(settings.db)
    try:
        registry = ModelRegistry(db)
        if args.action == "sync":
            repository = Path(args.model_repository or settings.triton.model_repository)
            versions = await sync_registry(registry, repository, "cli")
            print(f"{len(versions)} versions registered (from {repository})")
        # Live quality lives in the API (GET /api/models); the terminal shows the registry.
        response = await model_sets(registry, [])
    finally:
        await db.close()
    encoded = msgspec.json.format(msgspec.json.encode(response)).decode()
    print(encoded if args.json else render(response))
    return 0


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_run(args, settings))
