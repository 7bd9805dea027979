"""Backtest jobs end to end: submitted through one API replica, run by real worker processes,
followed through another replica; listed, cancelled queued and running; workers killed mid-run
(retried, then failed after the bounded attempts, never left "running"); stopped cleanly
(queued again); and runs that outlive a flushed Redis and a restarted API."""

from __future__ import annotations

from typing import Any

import pytest
import redis

from orchestrator.jobs.runs import RunStore
from orchestrator.settings import Settings
from tests.conftest import until
from tests.jobs.conftest import (
    LONG,
    SHORT,
    WALK_FORWARD,
    Workers,
    as_job,
    replica,
    wait_until,
)


async def test_a_job_submitted_on_one_replica_is_followed_on_another(
    settings: Settings, workers: Workers, runs: RunStore
) -> None:
    workers.start()
    async with replica(settings) as first, replica(settings) as second:
        inline = await first.post("/api/backtest", json=SHORT)
        assert inline.status_code == 200, inline.text
        submitted = await first.post("/api/backtest", json=as_job(SHORT))
        assert submitted.status_code == 202, submitted.text
        job = submitted.json()
        assert job["status"] == "queued"
        assert job["kind"] == "backtest"
        assert job["status_url"] == f"/api/backtest/{job['id']}"

        seen = []

        async def ended() -> dict[str, Any] | None:
            polled = await second.get(job["status_url"])
            assert polled.status_code == 200, polled.text
            state: dict[str, Any] = polled.json()
            seen.append((state["status"], state["phase"], state["progress"]))
            assert 0.0 <= state["progress"] <= 1.0
            return None if state["status"] in ("queued", "running") else state

        state = await until(ended, what="the job to end", timeout_s=120, detail=workers.logs)
        assert state["status"] == "done", (state, workers.logs())
        assert state["attempts"] == 1
        assert state["started_at"]
        assert state["finished_at"]
        assert state["result"]["metrics"] == inline.json()["result"]["metrics"]
        assert state["result"]["trades"] == inline.json()["result"]["trades"]
        assert state["request"]["symbol"] == "BTCUSD"

        listed = await second.get("/api/backtest", params={"status": "done"})
        assert listed.status_code == 200, listed.text
        page = listed.json()
        assert [item["id"] for item in page["items"]] == [job["id"]]
        assert page["items"][0]["result"] is None  # results only through the job's own URL
        assert page["total"] == 1
        assert page["next_offset"] is None

        conflict = await second.delete(job["status_url"])
        assert conflict.status_code == 409, conflict.text
        assert conflict.json()["error"] == "Conflict"
        assert "already finished with status 'done'" in conflict.json()["message"]


async def test_queued_jobs_are_listed_newest_first_and_cancelled_at_once(
    settings: Settings, workers: Workers, runs: RunStore
) -> None:
    async with replica(settings) as api:
        ids = []
        for _ in range(3):  # no worker yet: they stay queued
            response = await api.post("/api/backtest", json=as_job(SHORT))
            assert response.status_code == 202, response.text
            ids.append(response.json()["id"])

        first = (await api.get("/api/backtest", params={"limit": 2})).json()
        assert [item["id"] for item in first["items"]] == [ids[2], ids[1]]
        assert (first["total"], first["next_offset"]) == (3, 2)
        rest = (await api.get("/api/backtest", params={"limit": 2, "offset": 2})).json()
        assert [item["id"] for item in rest["items"]] == [ids[0]]
        assert rest["next_offset"] is None
        running = (await api.get("/api/backtest", params={"status": "running"})).json()
        assert running["total"] == 0
        assert running["items"] == []
        for bad in ({"status": "lost"}, {"limit": 0}, {"limit": 101}, {"offset": -1}):
            response = await api.get("/api/backtest", params=bad)
            assert response.status_code == 400, (bad, response.text)

        cancelled = await api.delete(f"/api/backtest/{ids[0]}")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        assert cancelled.json()["finished_at"] is not None
        again = await api.delete(f"/api/backtest/{ids[0]}")
        assert again.status_code == 409, again.text

        workers.start()  # runs the two others; the cancelled one never starts
        for run_id in ids[1:]:
            done = await wait_until(
                lambda run_id=run_id: runs.get(run_id),
                lambda run: run.finished,
                what=f"run {run_id} to finish",
                workers=workers,
            )
            assert done.status == "done", done
        skipped = await runs.get(ids[0])
        assert skipped is not None
        assert (skipped.status, skipped.attempts, skipped.started_at) == ("cancelled", 0, None)


async def test_a_running_job_is_cancelled_at_its_next_step(
    settings: Settings, workers: Workers, runs: RunStore
) -> None:
    worker = workers.start()
    async with replica(settings) as api:
        response = await api.post("/api/backtest", json=WALK_FORWARD)
        assert response.status_code == 202, response.text
        job = response.json()
        assert job["kind"] == "walk_forward"
        assert job["walk_forward"] == 2
        await wait_until(
            lambda: runs.get(job["id"]),
            lambda run: run.status == "running" and run.phase == "training",
            what="the walk-forward to train its first window",
            workers=workers,
        )
        asked = await api.delete(job["status_url"])
        assert asked.status_code == 202, asked.text
        assert asked.json()["status"] == "running"
        assert asked.json()["cancel_requested"] is True
        cancelled = await wait_until(
            lambda: runs.get(job["id"]),
            lambda run: run.finished,
            what="the running job to stop",
            workers=workers,
            timeout_s=20,
        )
        assert cancelled.status == "cancelled", cancelled
        assert cancelled.result is None
        assert cancelled.finished_at is not None
        assert worker.poll() is None  # the worker itself lives on
    # The cancelled window's training thread cannot be interrupted; do not wait for it.
    workers.kill_all()


async def test_a_job_whose_worker_is_killed_runs_again_on_another(
    settings: Settings, workers: Workers, runs: RunStore
) -> None:
    first = workers.start()
    async with replica(settings) as api:
        response = await api.post("/api/backtest", json=as_job(LONG))
        assert response.status_code == 202, response.text
        run_id = response.json()["id"]
        running = await wait_until(
            lambda: runs.get(run_id),
            lambda run: run.status != "queued",
            what="a worker to start the run",
            workers=workers,
            every_s=0.005,
        )
        assert running.status == "running", f"the run ended before the kill: {running}"
        workers.kill(first)  # mid-run, no cleanup
        workers.start()
        done = await wait_until(
            lambda: runs.get(run_id),
            lambda run: run.finished,
            what="the run to finish on the second worker",
            workers=workers,
        )
        assert done.status == "done", (done, workers.logs())
        assert done.attempts == 2
        answer = (await api.get(f"/api/backtest/{run_id}")).json()
        assert answer["status"] == "done"
        assert answer["attempts"] == 2
        assert answer["result"]["bars"] > 9000


async def test_a_job_whose_workers_keep_dying_fails_after_bounded_retries(
    settings: Settings,
    workers: Workers,
    runs: RunStore,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("JOB_MAX_ATTEMPTS", "2")  # the API stamps it on the job it submits
    async with replica(settings) as api:
        response = await api.post("/api/backtest", json=WALK_FORWARD)
        assert response.status_code == 202, response.text
        run_id = response.json()["id"]
        assert response.json()["max_attempts"] == 2
        for attempt in (1, 2):
            proc = workers.start()
            await wait_until(
                lambda: runs.get(run_id),
                lambda run, attempt=attempt: run.status == "running" and run.attempts == attempt,
                what=f"attempt {attempt} to start",
                workers=workers,
                timeout_s=60,
            )
            workers.kill(proc)
        workers.start()
        failed = await wait_until(
            lambda: runs.get(run_id),
            lambda run: run.finished,
            what="the run to be given up",
            workers=workers,
            timeout_s=60,
        )
        assert failed.status == "failed", failed
        assert failed.attempts == 2
        assert failed.error is not None
        assert failed.error.error == "Worker died"
        assert "2 attempt(s)" in failed.error.message
        answer = (await api.get(f"/api/backtest/{run_id}")).json()
        assert (answer["status"], answer["error_status"]) == ("failed", 500)
    workers.kill_all()


async def test_a_stopped_worker_hands_its_job_back(
    settings: Settings, workers: Workers, runs: RunStore
) -> None:
    first = workers.start()
    async with replica(settings) as api:
        response = await api.post("/api/backtest", json=as_job(LONG))
        run_id = response.json()["id"]
        await wait_until(
            lambda: runs.get(run_id),
            lambda run: run.status != "queued",
            what="a worker to start the run",
            workers=workers,
            every_s=0.005,
        )
        first.terminate()  # as `make stop` does
        first.wait(20)
        requeued = await runs.get(run_id)
        assert requeued is not None
        if requeued.status != "done":  # it may have finished before the signal arrived
            assert (requeued.status, requeued.attempts) == ("queued", 0), requeued
            workers.start()
            done = await wait_until(
                lambda: runs.get(run_id),
                lambda run: run.finished,
                what="the next worker to run it",
                workers=workers,
            )
            assert (done.status, done.attempts) == ("done", 1), done


async def test_runs_outlive_a_flushed_redis_and_a_restarted_api(
    settings: Settings, workers: Workers, runs: RunStore
) -> None:
    workers.start()
    async with replica(settings) as api:
        finished = (await api.post("/api/backtest", json=as_job(SHORT))).json()
        await wait_until(
            lambda: runs.get(finished["id"]),
            lambda run: run.finished,
            what="the first run",
            workers=workers,
        )
        workers.stop_all()
        waiting = (await api.post("/api/backtest", json=as_job(SHORT))).json()
        before = (await api.get(finished["status_url"])).json()

    client = redis.Redis.from_url(settings.redis.url)
    client.flushdb()  # the queue and every job record in Redis are gone
    client.close()

    async with replica(settings) as restarted:
        after = await restarted.get(finished["status_url"])
        assert after.status_code == 200, after.text
        assert after.json()["status"] == "done"
        assert after.json()["result"] == before["result"]
        queued = (await restarted.get(waiting["status_url"])).json()
        assert queued["status"] == "queued"
        workers.start()  # its reconciler finds the run Redis lost and queues it again
        done = await wait_until(
            lambda: runs.get(waiting["id"]),
            lambda run: run.finished,
            what="the run Redis lost to be queued again and run",
            workers=workers,
        )
        assert (done.status, done.attempts) == ("done", 1), done
