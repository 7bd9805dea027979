"""What `ml-engine models` does once its arguments are checked (command.py): list or sync the
registry, switch the served version, or queue a retrain and follow it."""

from __future__ import annotations

import argparse
import asyncio
import getpass
from pathlib import Path

import msgspec
import tritonclient.grpc.aio as grpcclient

from orchestrator.errors import ConflictError
from orchestrator.jobs.runs import RunStore
from orchestrator.jobs.service import BacktestJobService
from orchestrator.jobs.settings import JobSettings
from orchestrator.lifecycle.exported import sync_registry
from orchestrator.lifecycle.registry import ModelRegistry
from orchestrator.lifecycle.retraining import RetrainRequest
from orchestrator.lifecycle.service import Lifecycle
from orchestrator.lifecycle.views import model_sets, render, retrain_view
from orchestrator.marketdata.db import Database
from orchestrator.settings import Settings


async def run(args: argparse.Namespace, settings: Settings) -> int:
    db = await Database.connect(settings.db)
    try:
        registry = ModelRegistry(db)
        repository = Path(args.model_repository or settings.triton.model_repository)
        if args.action == "sync":
            versions = await sync_registry(registry, repository, "cli")
            print(f"{len(versions)} versions registered (from {repository})")
        elif args.action in ("promote", "rollback"):
            await _switch(args, settings, registry, repository)
        elif args.action == "retrain":
            return await _retrain(args, settings, db, registry)
        # Live quality lives in the API (GET /api/models); the terminal shows the registry.
        response = await model_sets(registry, RunStore(db), [])
    finally:
        await db.close()
    encoded = msgspec.json.format(msgspec.json.encode(response)).decode()
    print(encoded if args.json else render(response))
    return 0


async def _switch(
    args: argparse.Namespace, settings: Settings, registry: ModelRegistry, repository: Path
) -> None:
    triton = grpcclient.InferenceServerClient(settings.triton.grpc_url)
    try:
        lifecycle = Lifecycle(
            registry, triton, repository, settings.triton.request_timeout_s, settings.triton.peers
        )
        actor = f"cli ({getpass.getuser()})"
        if args.action == "promote":
            moved = await lifecycle.promote(args.model_set, args.version, actor, args.reason)
        else:
            moved = await lifecycle.rollback(args.model_set, actor, args.reason)
    finally:
        await triton.close()
    print(f"{moved.model_set} v{moved.version} serves now ({moved.status_reason})")


async def _retrain(
    args: argparse.Namespace, settings: Settings, db: Database, registry: ModelRegistry
) -> int:
    await registry.versions_of(args.model_set)  # an unknown set: its error, nothing queued

    async def database() -> Database:
        return db

    jobs = BacktestJobService(database, settings.redis, JobSettings.from_env())
    try:
        request = RetrainRequest(
            model_set=args.model_set,
            trigger="manual",
            reason=args.reason,
            actor=f"cli ({getpass.getuser()})",
            epochs=args.epochs,
            folds=args.folds,
        )
        run = await jobs.submit_retrain(request)
    finally:
        await jobs.close()
    runs = RunStore(db)
    if run is None:
        running = await runs.in_flight_retrain(args.model_set)
        where = f" (run {running.id}, {running.status})" if running else ""
        raise ConflictError(f"{args.model_set} is already retraining{where}")
    print(f"queued retrain {run.id} of {args.model_set}")
    if not args.wait:
        return 0
    shown = ""
    while not run.finished:
        await asyncio.sleep(1.0)
        latest = await runs.get(run.id)
        assert latest is not None
        run = latest
        line = f"{run.status}: {run.phase} {run.progress:.0%}"
        if line != shown:
            print(line, flush=True)
            shown = line
    view = retrain_view(run)
    if view.outcome is not None:
        o = view.outcome
        print(f"v{o.version} ({o.verdict}) against champion v{o.champion}: {o.reason}")
        return 0
    if view.error is not None:
        print(f"retrain {run.status}: {view.error.message}")
    return 1
