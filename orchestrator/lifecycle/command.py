"""`ml-engine models list|sync|retrain|promote|rollback`: the model registry from a terminal
(retrain queues a job for the workers; promote and rollback switch the configured Triton like
the API's admin routes, docs/lifecycle.md). Only the arguments and their checks live here, so
building the CLI's parser stays light; terminal.py does the work."""

from __future__ import annotations

import argparse
import asyncio

from orchestrator.errors import BadParameterError
from orchestrator.settings import Settings


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["list", "sync", "retrain", "promote", "rollback"])
    parser.add_argument(
        "--set", dest="model_set", help="retrain/promote/rollback: e.g. signal_ensemble_1h"
    )
    parser.add_argument("--version", type=int, help="promote: the version to serve")
    parser.add_argument("--reason", help="retrain/promote/rollback: recorded in the registry")
    parser.add_argument(
        "--wait",
        action="store_true",
        help="retrain: follow the run's progress until it ends (a worker must be running: "
        "`make worker`)",
    )
    parser.add_argument("--epochs", type=int, help="retrain: default $RETRAIN_EPOCHS")
    parser.add_argument("--folds", type=int, help="retrain: default $RETRAIN_FOLDS")
    parser.add_argument(
        "--model-repository",
        help="the repository to register, and to pin on promote/rollback "
        "(default: $MODEL_REPOSITORY)",
    )
    parser.add_argument("--json", action="store_true", help="list: the API's JSON instead")


def _check(args: argparse.Namespace) -> None:
    promote = args.action == "promote"
    if args.action == "retrain" and not (args.model_set and args.reason):
        raise BadParameterError("models retrain needs --set and --reason")
    if args.action in ("promote", "rollback") and not (
        args.model_set and args.reason and (args.version or not promote)
    ):
        needed = "--set, --version and --reason" if promote else "--set and --reason"
        raise BadParameterError(f"models {args.action} needs {needed}")


def cmd_models(args: argparse.Namespace, settings: Settings) -> int:
    _check(args)
    from orchestrator.lifecycle.terminal import run

    return asyncio.run(run(args, settings))
