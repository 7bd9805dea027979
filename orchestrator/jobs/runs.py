"""The `backtest_runs` table: the durable record of every job, read by any replica.

Every write is one transaction with a guard in its WHERE clause (the status it expects, and for
a worker the attempt it runs), so two replicas, a worker and a late retry of a dead worker can
race without overwriting a newer state.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, Literal, get_args

import msgspec
from asyncmy.cursors import Cursor

from orchestrator.backtest.request import BacktestRequest
from orchestrator.errors import ErrorBody
from orchestrator.jobs.errors import RunFinishedError, RunNotFoundError
from orchestrator.lifecycle.retraining import RetrainRequest
from orchestrator.marketdata.db import Database

RunKind = Literal["backtest", "walk_forward", "retrain"]
BACKTEST_KINDS: tuple[RunKind, ...] = ("backtest", "walk_forward")
RunStatus = Literal["queued", "running", "done", "failed", "cancelled"]
RUN_STATUSES: tuple[RunStatus, ...] = get_args(RunStatus)
FINISHED: frozenset[RunStatus] = frozenset({"done", "failed", "cancelled"})


class RunParameters(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What the worker runs: a backtest's validated request (and K windows for a walk-forward),
    or a retrain's."""

    request: BacktestRequest | None = None
    walk_forward: int | None = None
    retrain: RetrainRequest | None = None

    @property
    def backtest(self) -> BacktestRequest:
        if self.request is None:
            raise ValueError("this run is a retrain, not a backtest")
        return self.request


class Run(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: RunKind
    parameters: RunParameters
    status: RunStatus
    phase: str
    progress: float
    attempts: int
    max_attempts: int
    cancel_requested: bool
    worker: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    error_status: int | None
    error: ErrorBody | None
    result: str | None  # the BacktestResult as JSON, when read with the result

    @property
    def finished(self) -> bool:
        return self.status in FINISHED


_COLUMNS = (
    "id, kind, parameters, status, phase, progress, attempts, max_attempts, cancel_requested, "
    "worker, created_at, started_at, finished_at, updated_at, error_status, error_body"
)
_UNFINISHED = "status IN ('queued', 'running')"


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None else None


def _row(row: Sequence[Any], with_result: bool) -> Run:
    return Run(
        id=row[0],
        kind=row[1],
        parameters=msgspec.json.decode(row[2], type=RunParameters),
        status=row[3],
        phase=row[4],
        progress=float(row[5]),
        attempts=int(row[6]),
        max_attempts=int(row[7]),
        cancel_requested=bool(row[8]),
        worker=row[9],
        created_at=row[10].replace(tzinfo=UTC),
        started_at=_utc(row[11]),
        finished_at=_utc(row[12]),
        updated_at=row[13].replace(tzinfo=UTC),
        error_status=row[14],
        error=msgspec.json.decode(row[15], type=ErrorBody) if row[15] is not None else None,
        result=row[16] if with_result else None,
    )


def _error_json(body: ErrorBody) -> str:
    return msgspec.json.encode(body).decode()


async def _select(cur: Cursor, run_id: str, *, lock: bool, with_result: bool) -> Run | None:
    columns = _COLUMNS + (", result" if with_result else "")
    suffix = " FOR UPDATE" if lock else ""
    await cur.execute(f"SELECT {columns} FROM backtest_runs WHERE id = %s{suffix}", (run_id,))
    row = await cur.fetchone()
    return _row(row, with_result) if row is not None else None


class RunStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # --- the API ------------------------------------------------------------------------------
    async def create(self, kind: RunKind, parameters: RunParameters, max_attempts: int) -> Run:
        run_id = uuid.uuid4().hex[:16]
        async with self.db.transaction() as conn, conn.cursor() as cur:
            await cur.execute(
                "INSERT INTO backtest_runs (id, kind, parameters, max_attempts) "
                "VALUES (%s, %s, %s, %s)",
                (run_id, kind, msgspec.json.encode(parameters).decode(), max_attempts),
            )
            run = await _select(cur, run_id, lock=False, with_result=False)
        assert run is not None
        return run

    async def discard(self, run_id: str) -> None:
        """Removes a run nobody was told about (its job could not be queued)."""
        async with self.db.transaction() as conn, conn.cursor() as cur:
            await cur.execute(
                "DELETE FROM backtest_runs WHERE id = %s AND status = 'queued'", (run_id,)
            )

    async def get(self, run_id: str, *, with_result: bool = True) -> Run | None:
        async with self.db.connection() as conn, conn.cursor() as cur:
            return await _select(cur, run_id, lock=False, with_result=with_result)

    async def create_retrain(self, request: RetrainRequest, max_attempts: int) -> Run | None:
        """A retrain run of `request.model_set`, unless one is queued or running already (None).
        A named lock per set makes check and insert one step across replicas and workers."""
        lock = f"retrain:{request.model_set}"
        async with self.db.connection() as conn, conn.cursor() as cur:
            await cur.execute("SELECT GET_LOCK(%s, 10)", (lock,))
            try:
                if await self.in_flight_retrain(request.model_set) is not None:
                    return None
                return await self.create("retrain", RunParameters(retrain=request), max_attempts)
            finally:
                await cur.execute("SELECT RELEASE_LOCK(%s)", (lock,))

    async def retrains(self, model_set: str | None = None, limit: int = 50) -> list[Run]:
        """The newest retrain runs (of one set), newest first, with their results."""
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS}, result FROM backtest_runs WHERE kind = 'retrain' "
            "ORDER BY created_at DESC, id DESC LIMIT %s",
            (limit if model_set is None else 10 * limit,),
        )
        runs = [_row(row, with_result=True) for row in rows]
        chosen = [
            run
            for run in runs
            if model_set is None
            or (
                run.parameters.retrain is not None and run.parameters.retrain.model_set == model_set
            )
        ]
        return chosen[:limit]

    async def in_flight_retrain(self, model_set: str) -> Run | None:
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM backtest_runs WHERE kind = 'retrain' AND {_UNFINISHED}", ()
        )
        for row in rows:
            run = _row(row, with_result=False)
            if run.parameters.retrain is not None and run.parameters.retrain.model_set == model_set:
                return run
        return None

    async def page(
        self,
        status: RunStatus | None,
        limit: int,
        offset: int,
        kinds: tuple[RunKind, ...] = BACKTEST_KINDS,
    ) -> tuple[list[Run], int]:
        """Newest first, without results (they can be megabytes each)."""
        marks = ", ".join(["%s"] * len(kinds))
        where, params = f"WHERE kind IN ({marks})", list[Any](kinds)
        if status:
            where, params = f"{where} AND status = %s", [*params, status]
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM backtest_runs {where} "
            "ORDER BY created_at DESC, id DESC LIMIT %s OFFSET %s",
            (*params, limit, offset),
        )
        total = await self.db.fetchall(f"SELECT COUNT(*) FROM backtest_runs {where}", params)
        return [_row(row, with_result=False) for row in rows], int(total[0][0])

    async def request_cancel(self, run_id: str) -> Run:
        """A queued run is cancelled at once; a running one is flagged and its worker stops it."""
        async with self.db.transaction() as conn, conn.cursor() as cur:
            run = await _select(cur, run_id, lock=True, with_result=False)
            if run is None:
                raise RunNotFoundError(run_id)
            if run.finished:
                raise RunFinishedError(run_id, run.status)
            if run.status == "queued":
                await cur.execute(
                    "UPDATE backtest_runs SET status = 'cancelled', cancel_requested = TRUE, "
                    "finished_at = NOW(6), updated_at = NOW(6) "
                    "WHERE id = %s",
                    (run_id,),
                )
            else:
                await cur.execute(
                    "UPDATE backtest_runs SET cancel_requested = TRUE, updated_at = NOW(6) "
                    "WHERE id = %s",
                    (run_id,),
                )
            changed = await _select(cur, run_id, lock=False, with_result=False)
        assert changed is not None
        return changed

    # --- a worker's attempt -------------------------------------------------------------------
    async def claim(self, run_id: str, worker: str, died: Callable[[int], ErrorBody]) -> Run | None:
        """Starts the next attempt; None when the run must not run (finished, cancelled, or out
        of attempts, which fails it with `died(attempts)`: only dead workers use attempts up)."""
        async with self.db.transaction() as conn, conn.cursor() as cur:
            run = await _select(cur, run_id, lock=True, with_result=False)
            if run is None or run.finished:
                return None
            if run.cancel_requested:
                await _settle(cur, run_id, "cancelled")
                return None
            if run.attempts >= run.max_attempts:
                await _settle(cur, run_id, "failed", error=(500, died(run.attempts)))
                return None
            await cur.execute(
                "UPDATE backtest_runs SET status = 'running', phase = 'starting', progress = 0, "
                "attempts = attempts + 1, worker = %s, started_at = COALESCE(started_at, NOW(6)), "
                "updated_at = NOW(6), error_status = NULL, error_body = NULL WHERE id = %s",
                (worker, run_id),
            )
            return await _select(cur, run_id, lock=False, with_result=False)

    async def report(self, run_id: str, attempt: int, phase: str, progress: float) -> bool | None:
        """Progress and a heartbeat; whether a cancel was asked for, None when this attempt no
        longer owns the run (cancelled while queued, or a later attempt took over)."""
        async with self.db.transaction() as conn, conn.cursor() as cur:
            await cur.execute(
                "UPDATE backtest_runs SET phase = %s, progress = %s, updated_at = NOW(6) "
                "WHERE id = %s AND status = 'running' AND attempts = %s",
                (phase, min(1.0, max(0.0, progress)), run_id, attempt),
            )
            if cur.rowcount == 0:
                return None
            await cur.execute("SELECT cancel_requested FROM backtest_runs WHERE id = %s", (run_id,))
            row = await cur.fetchone()
        return bool(row[0]) if row is not None else None

    async def finish(self, run_id: str, attempt: int, result_json: str) -> RunStatus | None:
        """Stores the result; a run whose cancel arrived meanwhile ends cancelled instead."""
        async with self.db.transaction() as conn, conn.cursor() as cur:
            run = await _owned(cur, run_id, attempt)
            if run is None:
                return None
            if run.cancel_requested:
                await _settle(cur, run_id, "cancelled")
                return "cancelled"
            await _settle(cur, run_id, "done", result=result_json)
            return "done"

    async def end(
        self, run_id: str, attempt: int, status: RunStatus, error: tuple[int, ErrorBody] | None
    ) -> bool:
        """Ends this attempt's run as failed or cancelled; False when it no longer owns it."""
        async with self.db.transaction() as conn, conn.cursor() as cur:
            if await _owned(cur, run_id, attempt) is None:
                return False
            await _settle(cur, run_id, status, error=error)
            return True

    async def requeue(
        self, run_id: str, expected: RunStatus, attempt: int, *, phase: str, counted: bool
    ) -> bool:
        """Back to queued (a worker stopped, or SAQ retries after one died), unless the run moved
        on from (`expected`, `attempt`). `counted=False` gives the attempt back: a worker that
        stopped cleanly did not fail the run."""
        async with self.db.transaction() as conn, conn.cursor() as cur:
            await cur.execute(
                "UPDATE backtest_runs SET status = 'queued', phase = %s, progress = 0, "
                "attempts = attempts - %s, updated_at = NOW(6) "
                "WHERE id = %s AND status = %s AND attempts = %s",
                (phase, 0 if counted else 1, run_id, expected, attempt),
            )
            return bool(cur.rowcount)

    # --- repairs (the reconciler) -------------------------------------------------------------
    async def stale(self, older_than_s: float, limit: int = 100) -> list[Run]:
        """Unfinished runs nothing wrote to for `older_than_s`, the oldest first."""
        rows = await self.db.fetchall(
            f"SELECT {_COLUMNS} FROM backtest_runs WHERE {_UNFINISHED} "
            "AND updated_at < NOW(6) - INTERVAL %s MICROSECOND ORDER BY updated_at LIMIT %s",
            (int(older_than_s * 1e6), limit),
        )
        return [_row(row, with_result=False) for row in rows]

    async def touch(self, run: Run) -> None:
        """Moves a run that is fine (waiting in the queue) to the back of the stale list."""
        async with self.db.transaction() as conn, conn.cursor() as cur:
            await cur.execute(
                "UPDATE backtest_runs SET updated_at = NOW(6) "
                "WHERE id = %s AND status = %s AND attempts = %s",
                (run.id, run.status, run.attempts),
            )

    async def settle_stale(
        self, run: Run, status: RunStatus, error: tuple[int, ErrorBody] | None = None
    ) -> bool:
        """Ends a run no worker will finish, unless it changed since it was read."""
        async with self.db.transaction() as conn, conn.cursor() as cur:
            await cur.execute(
                "SELECT status, attempts FROM backtest_runs WHERE id = %s FOR UPDATE", (run.id,)
            )
            row = await cur.fetchone()
            if row is None or (row[0], int(row[1])) != (run.status, run.attempts):
                return False
            await _settle(cur, run.id, status, error=error)
            return True


async def _owned(cur: Cursor, run_id: str, attempt: int) -> Run | None:
    run = await _select(cur, run_id, lock=True, with_result=False)
    if run is None or run.status != "running" or run.attempts != attempt:
        return None
    return run


async def _settle(
    cur: Cursor,
    run_id: str,
    status: RunStatus,
    *,
    error: tuple[int, ErrorBody] | None = None,
    result: str | None = None,
) -> None:
    error_status, error_body = (error[0], _error_json(error[1])) if error else (None, None)
    await cur.execute(
        "UPDATE backtest_runs SET status = %s, phase = IF(%s = 'done', 'done', phase), "
        "progress = IF(%s = 'done', 1, progress), finished_at = NOW(6), updated_at = NOW(6), "
        "error_status = %s, error_body = %s, result = %s WHERE id = %s",
        (status, status, status, error_status, error_body, result, run_id),
    )
