"""`python -m orchestrator worker`: runs backtest, walk-forward and retrain jobs from the SAQ
queue, and queues the scheduled retrains (RETRAIN_CRON).

Start one per machine (any number, all pointing at one Redis and one MySQL). Each attempt claims
its run in MySQL, writes progress there (throttled) as its heartbeat, and heartbeats SAQ. A
worker that dies mid-run stops heartbeating: SAQ's sweep (in any live worker) aborts its job and
starts it again, up to JOB_MAX_ATTEMPTS; then the run fails with a message saying the worker
died. The reconciler repairs what Redis alone cannot: runs whose job SAQ gave up, and runs Redis
lost (flushed or restarted without its data), which it queues again.

This is the only process that imports the training stack (walk-forward retrains models).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from pathlib import Path
from typing import Any

import msgspec
import tritonclient.grpc.aio as grpc_aio
from asyncmy.errors import Error as MySQLError
from redis.exceptions import RedisError
from saq import CronJob, Worker
from saq.job import Job, Status
from saq.types import Context, PartialTimersDict
from saq.utils import now

from export.retrain import retrain
from export.shadow import judge_challenger
from export.walkforward import WalkForwardConfig, run_walk_forward
from orchestrator.backtest.predictions import PREDICTION_CACHE_DIR
from orchestrator.backtest.report import BacktestResult
from orchestrator.backtest.runner import PhaseProgress, run_backtest
from orchestrator.errors import ErrorBody, ServiceUnavailableError, describe
from orchestrator.inference.calls import close_client
from orchestrator.inference.client import SignalModels
from orchestrator.inference.models import ENSEMBLE, served_name
from orchestrator.jobs.errors import JobQueueUnavailableError
from orchestrator.jobs.queue import IN_FLIGHT, WORKER_DIED, JobQueue
from orchestrator.jobs.runs import Run, RunStatus, RunStore
from orchestrator.jobs.settings import JobSettings
from orchestrator.lifecycle.exported import sync_registry
from orchestrator.lifecycle.registry import ModelRegistry
from orchestrator.lifecycle.retraining import RetrainRequest, RetrainResult, RetrainSettings
from orchestrator.marketdata.db import Database, DatabaseUnavailableError
from orchestrator.marketdata.timeframes import parse_timeframe
from orchestrator.settings import Settings

log = logging.getLogger("orchestrator.worker")

TASKS = ("backtest", "walk_forward", "retrain")  # SAQ task names, one per run kind
_TRANSIENT = (DatabaseUnavailableError, MySQLError, JobQueueUnavailableError, RedisError, OSError)


class WorkerSetupError(ServiceUnavailableError):
    """The worker cannot start (the runs table is missing; exit 3)."""


class AttemptStoppedError(RuntimeError):
    """Raised at the next progress point of an attempt that must stop."""


def worker_died(attempts: int) -> ErrorBody:
    return ErrorBody(
        "Worker died",
        f"the worker running this job stopped (killed, crashed or hung) in each of its "
        f"{attempts} attempt(s); JOB_MAX_ATTEMPTS={attempts} allows no further retry",
    )


class Attempt:
    """One attempt at one run: the progress callback the backtest code calls, and the loop that
    writes progress to MySQL (the heartbeat other replicas see), touches SAQ's heartbeat and
    watches for a cancel."""

    def __init__(self, runs: RunStore, run: Run, job: Job, settings: JobSettings) -> None:
        self.runs, self.run, self.job, self.settings = runs, run, job, settings
        self.phase, self.fraction = "starting", 0.0
        self.stop_reason: str | None = None  # "cancelled" or "superseded"

    def progress(self, phase: str, fraction: float) -> None:
        if self.stop_reason is not None:
            raise AttemptStoppedError(self.stop_reason)
        self.phase, self.fraction = phase, fraction

    async def watch(self) -> None:
        """Returns once the run must stop (cancel asked, or the attempt no longer owns it)."""
        loop = asyncio.get_running_loop()
        beat_every = max(self.settings.heartbeat_s / 3, self.settings.progress_interval_s)
        last_beat = loop.time()
        while True:
            await asyncio.sleep(self.settings.progress_interval_s)
            try:
                cancel = await self.runs.report(
                    self.run.id, self.run.attempts, self.phase, self.fraction
                )
            except _TRANSIENT as exc:
                log.warning("run %s: progress not written: %s", self.run.id, exc)
                cancel = False
            if cancel is None or cancel:
                self.stop_reason = "superseded" if cancel is None else "cancelled"
                return
            if loop.time() - last_beat >= beat_every:
                last_beat = loop.time()
                try:
                    await self.job.update(progress=self.fraction)
                except _TRANSIENT as exc:
                    log.warning("run %s: SAQ heartbeat not written: %s", self.run.id, exc)


async def _cancel(*tasks: asyncio.Task[Any]) -> None:
    for task in tasks:
        task.cancel()
    for task in tasks:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


class BacktestWorker:
    def __init__(
        self,
        settings: Settings,
        jobs: JobSettings,
        db: Database,
        queue: JobQueue,
        cache_dir: Path | None,
    ) -> None:
        self.settings, self.jobs, self.db, self.queue = settings, jobs, db, queue
        self.runs = RunStore(db)
        self.cache_dir = cache_dir
        self.id = f"{socket.gethostname()}:{os.getpid()}"
        self.triton = grpc_aio.InferenceServerClient(settings.triton.grpc_url)
        self.retraining = RetrainSettings.from_env()

    def cron_jobs(self) -> list[CronJob[Context]]:
        """The retrain schedule (one SAQ cron job: SAQ enqueues it once per tick whatever the
        number of workers)."""
        jobs: list[CronJob[Context]] = []
        if self.retraining.cron:
            jobs.append(CronJob(self.scheduled_retrain, cron=self.retraining.cron, timeout=300))
        if self.retraining.judge_cron:
            jobs.append(
                CronJob(self.judge_challengers, cron=self.retraining.judge_cron, timeout=3600)
            )
        return jobs

    async def judge_challengers(self, ctx: Context) -> dict[str, str]:
        """The promotion test's live half for every set with a challenger (export/shadow.py)."""
        verdicts = {}
        for version in await ModelRegistry(self.db).versions():
            if version.status != "challenger":
                continue
            try:
                decision = await judge_challenger(
                    version.model_set,
                    db=self.db,
                    triton=self.triton,
                    timeout_s=self.settings.triton.request_timeout_s,
                    repository=Path(self.settings.triton.model_repository),
                    min_shadow_outcomes=self.retraining.min_shadow_outcomes,
                    peers=self.settings.triton.peers,
                )
            except Exception:  # one set's failure must not keep the others from being judged
                log.exception("judging %s v%d failed", version.model_set, version.version)
                verdicts[version.model_set] = "error"
                continue
            verdicts[version.model_set] = decision.verdict if decision else "not judged"
        return verdicts

    async def scheduled_retrain(self, ctx: Context) -> dict[str, list[str]]:
        """Queues a retrain of every set with a champion (a set already retraining is skipped)."""
        registry = ModelRegistry(self.db)
        await sync_registry(registry, Path(self.settings.triton.model_repository), "schedule")
        queued, skipped = [], []
        for version in await registry.versions():
            if version.status != "champion":
                continue
            if self.retraining.sets and version.model_set not in self.retraining.sets:
                continue
            request = RetrainRequest(
                model_set=version.model_set,
                trigger="schedule",
                reason=f"scheduled retrain (RETRAIN_CRON={self.retraining.cron})",
                actor="schedule",
            )
            run = await self.runs.create_retrain(request, self.jobs.max_attempts)
            if run is None:
                skipped.append(version.model_set)
                continue
            await self.queue.enqueue("retrain", run.id)
            queued.append(version.model_set)
        log.info("scheduled retrain: queued %s; already retraining %s", queued, skipped)
        return {"queued": queued, "skipped": skipped}

    async def serve(self) -> None:
        """Until SIGTERM/SIGINT; an attempt still running then is queued again."""
        worker: Worker[Context] = Worker(
            self.queue.saq,
            functions=[(name, self.run) for name in TASKS],
            cron_jobs=self.cron_jobs(),
            id=self.id,
            concurrency=self.jobs.concurrency,
            timers=PartialTimersDict(schedule=1, worker_info=10, sweep=self.jobs.sweep_s, abort=1),
            dequeue_timeout=5.0,
            cancellation_hard_deadline_s=10.0,
            metadata={"host": socket.gethostname(), "pid": os.getpid()},
        )
        repairs = asyncio.create_task(self._reconcile_forever(), name="reconcile")
        log.info(
            "worker ready: %s, queue %s at %s, concurrency %d, heartbeat %d s, max attempts %d",
            self.id,
            self.queue.saq.name,
            self.queue.url,
            self.jobs.concurrency,
            self.jobs.heartbeat_s,
            self.jobs.max_attempts,
        )
        try:
            await worker.start()
        finally:
            await _cancel(repairs)
            await close_client(self.triton, self.settings.triton.request_timeout_s)

    # --- one attempt --------------------------------------------------------------------------
    async def run(self, ctx: Context, *, run_id: str) -> dict[str, str]:
        """The SAQ task (both kinds). Failures of the run end it in MySQL and return normally:
        SAQ retries only attempts whose worker died."""
        job = ctx["job"]
        run = await self.runs.claim(run_id, self.id, worker_died)
        if run is None:
            log.info("run %s: nothing to do (finished, cancelled or out of attempts)", run_id)
            return {"run_id": run_id, "status": "skipped"}
        log.info("run %s (%s): attempt %d of %d", run.id, run.kind, run.attempts, run.max_attempts)
        attempt = Attempt(self.runs, run, job, self.jobs)
        body = asyncio.create_task(self._execute(run, attempt.progress), name=f"run:{run_id}")
        watch = asyncio.create_task(attempt.watch(), name=f"watch:{run_id}")
        try:
            await asyncio.wait({body, watch}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            await _cancel(body, watch)
            await self._interrupted(ctx, run)
            raise
        if not body.done():
            await _cancel(body)
            if attempt.stop_reason == "cancelled":
                await self.runs.end(run.id, run.attempts, "cancelled", None)
            log.info("run %s: stopped (%s)", run.id, attempt.stop_reason)
            return {"run_id": run_id, "status": attempt.stop_reason or "stopped"}
        await _cancel(watch)
        return {"run_id": run_id, "status": await self._settle(run, body, attempt)}

    async def _execute(self, run: Run, progress: PhaseProgress) -> BacktestResult | RetrainResult:
        if run.parameters.retrain is not None:
            return await retrain(
                run.parameters.retrain,
                run_id=run.id,
                db=self.db,
                triton=self.triton,
                triton_timeout_s=self.settings.triton.request_timeout_s,
                repository=Path(self.settings.triton.model_repository),
                settings=self.retraining,
                progress=progress,
                peers=self.settings.triton.peers,
            )
        request = run.parameters.backtest
        if run.kind == "walk_forward":
            windows = run.parameters.walk_forward or WalkForwardConfig().windows
            config = WalkForwardConfig(windows=windows)
            return await run_walk_forward(request, db=self.db, config=config, progress=progress)
        # A fresh model set per run: its spec and version are those served now.
        ensemble = served_name(ENSEMBLE, parse_timeframe(request.timeframe).value)
        models = SignalModels(self.triton, self.settings.triton.request_timeout_s, ensemble)
        return await run_backtest(
            request, db=self.db, models=models, cache_dir=self.cache_dir, progress=progress
        )

    async def _settle(
        self, run: Run, body: asyncio.Task[BacktestResult | RetrainResult], attempt: Attempt
    ) -> str:
        exc = body.exception()
        if exc is None:
            status = await self.runs.finish(
                run.id, run.attempts, msgspec.json.encode(body.result()).decode()
            )
            log.info("run %s: %s", run.id, status or "superseded")
            return status or "superseded"
        if isinstance(exc, AttemptStoppedError):
            if attempt.stop_reason == "cancelled":
                await self.runs.end(run.id, run.attempts, "cancelled", None)
            return attempt.stop_reason or "stopped"
        code, error = describe(exc)  # what a synchronous request would have answered
        await self.runs.end(run.id, run.attempts, "failed", (code, error))
        log.info("run %s: failed with %d: %s", run.id, code, error.message)
        return "failed"

    async def _interrupted(self, ctx: Context, run: Run) -> None:
        """SAQ cancelled the attempt: a DELETE (SAQ's abort), this worker stopping, or the job
        timeout."""
        worker = ctx["worker"]
        task = worker.job_task_contexts.get(ctx["job"])
        aborted = task["aborted"] if task is not None else None
        try:
            if aborted is not None:
                await self.runs.end(run.id, run.attempts, "cancelled", None)
                log.info("run %s: cancelled", run.id)
            elif worker.event.is_set():
                await self.runs.requeue(
                    run.id, "running", run.attempts, phase="queued", counted=False
                )
                log.info("run %s: worker stopping; queued again", run.id)
            else:
                error = ErrorBody(
                    "Job timed out",
                    f"the attempt ran longer than JOB_TIMEOUT_S={self.jobs.timeout_s} s and was "
                    "stopped; use a shorter range or fewer walk-forward windows",
                )
                await self.runs.end(run.id, run.attempts, "failed", (504, error))
        except _TRANSIENT as exc:
            log.warning("run %s: interruption not recorded (the reconciler will): %s", run.id, exc)

    # --- repairs ------------------------------------------------------------------------------
    async def _reconcile_forever(self) -> None:
        while True:
            try:
                await self.reconcile()
            except _TRANSIENT as exc:
                log.warning("reconcile skipped: %s", exc)
            except Exception:
                log.exception("reconcile failed")
            await asyncio.sleep(self.jobs.sweep_s)

    async def reconcile(self) -> None:
        """The sweep, keyed on the MySQL heartbeat (every attempt writes its run at least every
        JOB_PROGRESS_INTERVAL_S). A running run silent for JOB_HEARTBEAT_S lost its worker
        (killed, crashed, hung or cut off): it is queued again, or ended once its attempts are
        used up. A queued run whose job Redis no longer holds (flushed, or restarted without its
        data) is queued again. The MySQL transition is guarded, so when several workers
        reconcile at once only one moves the SAQ job."""
        for run in await self.runs.stale(self.jobs.heartbeat_s):
            job = await self.queue.job(run.id)
            if run.status == "queued":
                await self._waiting(run, job)
            else:
                await self._orphaned(run, job)

    async def _waiting(self, run: Run, job: Job | None) -> None:
        if job is None or job.status not in IN_FLIGHT:
            await self.queue.enqueue(run.kind, run.id)
            log.warning("run %s: not in the job queue (Redis lost it); queued again", run.id)
        elif job.status != Status.QUEUED and _silent_s(job) > self.jobs.heartbeat_s:
            await self.queue.retry(job, WORKER_DIED)  # its worker died before claiming the run
            log.warning(
                "run %s: taken by a worker that died before starting it; queued again", run.id
            )
        await self.runs.touch(run)  # off the stale list for another heartbeat

    async def _orphaned(self, run: Run, job: Job | None) -> None:
        in_flight = job is not None and job.status in IN_FLIGHT
        if run.cancel_requested or run.attempts >= run.max_attempts:
            status: RunStatus = "cancelled" if run.cancel_requested else "failed"
            error = None if run.cancel_requested else (500, worker_died(run.attempts))
            if not await self.runs.settle_stale(run, status, error):
                return  # it moved on meanwhile, or another worker got there first
            if job is not None and in_flight:
                await self.queue.finish_aborted(job, WORKER_DIED)
            log.warning("run %s: its worker died; the run ends %s", run.id, status)
            return
        if not await self.runs.requeue(
            run.id, "running", run.attempts, phase="retrying", counted=True
        ):
            return
        if job is None or not in_flight:
            await self.queue.enqueue(run.kind, run.id)
        elif job.status != Status.QUEUED:
            await self.queue.retry(job, WORKER_DIED)
        log.warning(
            "run %s: its worker died in attempt %d of %d; queued again",
            run.id,
            run.attempts,
            run.max_attempts,
        )


def _silent_s(job: Job) -> float:
    """Seconds since the worker holding `job` last showed life to SAQ (dequeue or heartbeat)."""
    return (now() - max(job.started, job.touched)) / 1000


async def _check_schema(db: Database) -> None:
    try:
        await db.fetchall("SELECT 1 FROM backtest_runs LIMIT 1", ())
    except MySQLError as exc:
        raise WorkerSetupError(
            f"the backtest_runs table is missing on {db.settings.address}/{db.settings.database} "
            f"({exc}); apply the migrations with `make db` (python -m orchestrator db migrate)"
        ) from None


async def serve(settings: Settings, jobs: JobSettings, *, prediction_cache: bool = True) -> None:
    """Connects to Redis and MySQL (failing fast with a clear message), then works until
    SIGTERM/SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    queue = JobQueue(settings.redis, jobs, blocking=True)
    try:
        try:
            await queue.saq.version()  # INFO: answers only when Redis does
        except (RedisError, OSError) as exc:
            raise JobQueueUnavailableError(settings.redis.url, str(exc)) from None
        db = await Database.connect(settings.db)
        try:
            await _check_schema(db)
            cache_dir = PREDICTION_CACHE_DIR if prediction_cache else None
            await BacktestWorker(settings, jobs, db, queue, cache_dir).serve()
        finally:
            await db.close()
    finally:
        await queue.close()
