"""One retrain run on a worker: train a new version of a served set, install it, judge it.

1. **Train** in a child process (`python -m export train`, the same command a person runs) into
   a staging repository beside the live one, on the champion's symbols and timeframe. A child
   process because training is minutes of CPU, gigabytes of memory and native threads: the
   worker's event loop keeps heartbeating, a cancel kills it at once, and it dies with the
   worker (export/lifeline.py), so a killed worker leaves no training behind.
2. **Install** the version into the live repository by renaming its directories in, the cpu
   ensemble last: that directory holds every artifact the cpu profile serves, so a version
   exists for the registry and for Triton only once it is whole. Directories a killed attempt
   left (a staging repository, a version without its cpu ensemble) are removed first. The
   champion is pinned in config.pbtxt before anything is installed, so a restarted Triton serves
   the champion and never the newest directory.
3. **Judge** it with the promotion test written down in advance (export/promotion.py) on the
   rows since the champion's training ended: the challenger's side is what its nested
   walk-forward served, the champion's what Triton serves now (the backtest's scoring path).
   Offline evidence alone never promotes: the version becomes the challenger ("wait": shadow
   outcomes next) or is rejected with the numbers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import sys
import time
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd
import tritonclient.grpc.aio as grpc_aio

from export.evidence import ChallengerRows
from export.install import (
    STAGING_PREFIX,
    install,
    prune_versions,
    remove_leftovers,
)
from export.lifeline import PARENT_VARIABLE
from export.promotion import REJECT, PromotionDecision, decide
from orchestrator.backtest.predictions import history_bars_wanted, predict_bars
from orchestrator.errors import (
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
    EngineError,
    NotEnoughDataError,
    NotFoundError,
    ServiceUnavailableError,
)
from orchestrator.inference.client import SignalModels
from orchestrator.lifecycle.exported import exported_version, sync_registry
from orchestrator.lifecycle.registry import ModelRegistry, ModelVersion, StatusMoveError
from orchestrator.lifecycle.retraining import RetrainRequest, RetrainResult, RetrainSettings
from orchestrator.lifecycle.service import Lifecycle
from orchestrator.lifecycle.switch import VersionLoadError
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import parse_timeframe

log = logging.getLogger("export.retrain")

EVIDENCE_FILE = "evidence.npz"
# tqdm's walk-forward bar ("walk-forward:  40%|####  | 2/5 [...]"): the fold count.
_FOLDS_DONE = re.compile(r"walk-forward:.*?\|\s*(\d+)/(\d+)")
Progress = Callable[[str, float], None]


class TrainingFailedError(EngineError):
    """The training process failed for a reason other than data or a service (a bug)."""

    title = "Training failed"


def train_command(
    request: RetrainRequest,
    champion: ModelVersion,
    symbols: list[str],
    staging: Path,
    settings: RetrainSettings,
) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "export",
        "train",
        "--symbols",
        ",".join(symbols),
        "--timeframe",
        champion.timeframe,
        "--repository",
        str(staging),
        "--epochs",
        str(request.epochs or settings.epochs),
        "--folds",
        str(request.folds or settings.folds),
        "--evidence",
        str(staging / EVIDENCE_FILE),
    ]
    window_days = request.window_days if request.window_days is not None else settings.window_days
    if window_days > 0:
        since = datetime.now(UTC) - timedelta(days=window_days)
        command += ["--since", since.isoformat()]
    return command


async def train_in_child(command: list[str], progress: Progress) -> None:
    """Runs the training command; its folds become progress 0.05 -> 0.80."""
    child = await asyncio.create_subprocess_exec(
        *command,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, PARENT_VARIABLE: str(os.getpid())},  # it dies with this worker
    )
    assert child.stdout is not None
    tail: deque[str] = deque(maxlen=30)
    try:
        pending = b""
        while chunk := await child.stdout.read(4096):
            *lines, pending = re.split(rb"[\r\n]", pending + chunk)
            for raw in lines:
                line = raw.decode(errors="replace").strip()
                if not line:
                    continue
                tail.append(line)
                if match := _FOLDS_DONE.search(line):
                    done, total = int(match[1]), max(int(match[2]), 1)
                    progress(
                        f"training fold {min(done + 1, total)} of {total}",
                        0.05 + 0.75 * done / total,
                    )
        code = await child.wait()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            child.kill()
        await child.wait()
        raise
    if code != 0:
        last = next((line for line in reversed(tail) if "warning" not in line.lower()), "")
        message = f"training exited with {code}: {last or 'no output'}"
        if code == EXIT_USAGE:
            raise NotEnoughDataError(message)
        if code == EXIT_UNAVAILABLE:
            raise ServiceUnavailableError(message)
        raise TrainingFailedError(message)


async def champion_served(
    rows: ChallengerRows,
    models: SignalModels,
    store: BarStore,
    timeframe: str,
    trained_through: datetime | None,
) -> tuple[ChallengerRows, npt.NDArray[np.float64]]:
    """The rows the champion never saw, and its served ranges on them (through Triton). Its
    training read each row's labels up to the longest horizon past its last row, so the rows
    start that many of the symbol's bars after `trained_through` (the purge of training)."""
    spec = await models.spec()
    tf = parse_timeframe(timeframe)
    span = max(rows.label_bars, default=0)
    kept, served = [], []
    for index, symbol in enumerate(rows.symbols):
        mine = np.flatnonzero(rows.symbol == index)
        if not mine.size:
            continue
        bars = await store.bars_between(
            symbol,
            tf,
            datetime(1970, 1, 1, tzinfo=UTC),
            datetime.now(UTC) + timedelta(days=1),
        )
        times = pd.DatetimeIndex(bars.index).asi8
        if trained_through is not None:
            last = int(np.searchsorted(times, int(trained_through.timestamp() * 1e9), "right"))
            if last + span >= len(times):
                continue
            mine = mine[rows.ts[mine] >= times[last + span]]
            if not mine.size:
                continue
        first = int(np.searchsorted(times, rows.ts[mine].min()))
        start = max(0, first - history_bars_wanted(spec))
        if first >= len(bars):
            continue
        predictions = await predict_bars(
            models, bars.iloc[start:], symbol=symbol, first=first - start, cache_dir=None
        )
        at = np.searchsorted(predictions.times, rows.ts[mine])
        at = np.minimum(at, len(predictions.times) - 1)
        found = (predictions.times[at] == rows.ts[mine]) & predictions.valid[at]
        found &= np.isfinite(predictions.served_range[at]).all(axis=1)
        kept.append(mine[found])
        served.append(predictions.served_range[at[found]])
    if not kept:
        return rows.take(np.zeros(0, np.int64)), np.zeros((0, rows.y.shape[1]))
    order = np.concatenate(kept)
    return rows.take(order), np.concatenate(served)


async def judge(
    rows: ChallengerRows,
    champion: ModelVersion,
    models: SignalModels,
    store: BarStore,
) -> tuple[PromotionDecision | None, str, int]:
    """The promotion test on the rows since the champion's training: (decision, reason, rows)."""
    since = rows
    if champion.trained_through is not None:
        since = rows.since(int(champion.trained_through.timestamp() * 1e9))
    through = champion.trained_through.isoformat() if champion.trained_through else "?"
    if not len(since):
        return (
            None,
            (
                f"no bars since the champion v{champion.version}'s training (through {through}) to "
                "compare the two on; retrain once new bars have arrived"
            ),
            0,
        )
    scored, served = await champion_served(
        since, models, store, champion.timeframe, champion.trained_through
    )
    if len(scored) < 2:
        return (
            None,
            (
                f"the champion v{champion.version} scored {len(scored)} of the {len(since)} rows "
                f"since its training (through {through}); too few to compare on"
            ),
            len(scored),
        )
    decision = decide(scored.against(served), None)
    return decision, decision.reason, len(scored)


async def retrain(
    request: RetrainRequest,
    *,
    run_id: str,
    db: Database,
    triton: grpc_aio.InferenceServerClient,
    triton_timeout_s: float,
    repository: Path,
    settings: RetrainSettings,
    progress: Progress,
    peers: tuple[str, ...] = (),
) -> RetrainResult:
    started = time.perf_counter()
    actor = f"retrain {run_id} ({request.trigger})"
    registry = ModelRegistry(db)
    await sync_registry(registry, repository, actor)
    versions = await registry.versions_of(request.model_set)
    champion = next((v for v in versions if v.status == "champion"), None)
    if champion is None:
        raise NotFoundError(
            f"model set {request.model_set!r} has no champion to retrain; GET /api/models lists "
            "the sets and their versions"
        )
    progress("preparing", 0.01)
    await asyncio.to_thread(remove_leftovers, repository, request.model_set, champion.timeframe)
    staging = repository.parent / f"{STAGING_PREFIX}{request.model_set}-{run_id}"
    staging.mkdir(parents=True)
    try:
        stored = {s.symbol for s in await BarStore(db).list_symbols()}
        symbols = [s for s in champion.symbols if s in stored]
        if not symbols:
            raise NotEnoughDataError(
                f"none of {request.model_set}'s symbols ({', '.join(champion.symbols)}) has bars "
                "in the store any more; ingest them, or train a new set with python -m export"
            )
        if len(symbols) < len(champion.symbols):
            log.warning(
                "retrain %s: %s not in the store; training on %s",
                run_id,
                ", ".join(sorted(set(champion.symbols) - stored)),
                ", ".join(symbols),
            )
        command = train_command(request, champion, symbols, staging, settings)
        log.info("retrain %s: %s", run_id, " ".join(command[1:]))
        await train_in_child(command, progress)
        progress("installing", 0.82)
        version = await asyncio.to_thread(
            install, staging, repository, request.model_set, champion.version
        )
        entry = exported_version(request.model_set, repository / request.model_set / str(version))
        if entry is None:
            raise TrainingFailedError(f"the export wrote no model card for {request.model_set}")
        await registry.register(entry, actor, request.reason)
        progress("judging against the champion", 0.85)
        rows = await asyncio.to_thread(ChallengerRows.load, staging / EVIDENCE_FILE)
        models = SignalModels(triton, triton_timeout_s, request.model_set)
        decision, reason, compared = await judge(rows, champion, models, BarStore(db))
    finally:
        await asyncio.to_thread(shutil.rmtree, staging, True)
    verdict = decision.verdict if decision is not None else REJECT
    numbers = msgspec.to_builtins(decision) if decision is not None else {"reason": reason}
    await registry.move(
        request.model_set,
        version,
        "rejected" if verdict == REJECT else "challenger",
        actor,
        reason,
        decision=numbers,
    )
    if verdict != REJECT:
        progress("loading the challenger beside the champion", 0.95)
        lifecycle = Lifecycle(registry, triton, repository, triton_timeout_s, peers)
        try:
            await lifecycle.load_challenger(request.model_set, version)
        except VersionLoadError as exc:
            verdict, reason = REJECT, f"Triton could not load it beside the champion: {exc}"
            await registry.move(request.model_set, version, "rejected", actor, reason)
    try:
        target: int | None = await registry.rollback_target(request.model_set)
    except StatusMoveError:
        target = None
    pruned = await asyncio.to_thread(
        prune_versions,
        repository,
        request.model_set,
        champion.timeframe,
        await registry.versions_of(request.model_set),
        target,
        settings.keep_versions,
    )
    if pruned:
        log.info("retrain %s: removed the files of versions %s", run_id, pruned)
    progress("done", 1.0)
    return RetrainResult(
        model_set=request.model_set,
        version=version,
        champion=champion.version,
        verdict=verdict,
        reason=reason,
        trained_from=entry.data_from,
        trained_through=entry.trained_through,
        offline_rows=compared,
        seconds=round(time.perf_counter() - started, 1),
    )
