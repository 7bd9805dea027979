"""Bar-close serving: every symbol's prediction computed when its bar closes, in batches.

The poller (poller.py) finds every (symbol, timeframe) whose newest closed bar moved, whoever
wrote it, with one indexed scan every `poll_interval_s`, and hands those keys to this engine's
sweeper, which:

1. brings each key's incremental feature state up to that bar (feature_states.py: the new bars of
   all keys in one query per resume point, O(1) per bar; a full recompute when the store no longer
   continues the state),
2. asks Triton for all their predictions at once (chunks of the ensemble's max batch size, in
   flight together, so dynamic batching sees full batches),
3. stores each prediction as the key's latest and tells the listeners (the WebSocket hub).

Requests use the same sweeper: `request(key, bar_time)` joins a computation already pending or
running for that bar (single-flight), otherwise it enters the next sweep ahead of background
work. Keys that arrive meanwhile form the next batch; it starts once the running sweep waits
for Triton (two sweeps in flight at most, never one key in both), so the features of one overlap
the inference of the other.

With several replicas (shared.py), a sweep first takes what another replica already computed from
Redis and claims the rest; a key claimed elsewhere waits for that replica's bar-close event
(`receive`), and is swept again if none came within the claim's lifetime.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt

from orchestrator.features.batch_inputs import InputBatch, batch_inputs
from orchestrator.features.head import OnlineLevels, apply_head
from orchestrator.features.online import ModelInputs
from orchestrator.features.spec import FeatureSpec
from orchestrator.inference.client import EnsembleOutput, SignalModels
from orchestrator.inference.feature_states import FeatureStates
from orchestrator.inference.heap import KEEPER
from orchestrator.inference.poller import BarClosePoller
from orchestrator.inference.prediction import (
    BarCloseStats,
    FeatureKey,
    Prediction,
    serve_together,
)
from orchestrator.inference.seeding import Seeder
from orchestrator.inference.series import SeriesIndex
from orchestrator.inference.shared import (
    ListedLevels,
    Series,
    SharedPrediction,
    SharedPredictions,
    Token,
)
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.sessions import TradingWeek
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import Timeframe

F64 = npt.NDArray[np.float64]


def _fitted_levels(
    timeframe: str, version: str, spec: FeatureSpec, served_series: int
) -> OnlineLevels | None:
    """No live quality wired: the intervals and probabilities stay as they were fitted."""
    return None


__all__ = ["BarCloseEngine", "BarCloseStats", "FeatureKey", "Prediction"]

log = logging.getLogger("orchestrator.barclose")

MAX_KEYS_PER_SWEEP = 1024  # bounds a request's wait behind background work (startup seeding)
REMOTE_RECHECK_S = 1.0  # a key claimed elsewhere is looked up again after this long


async def _first_of(tasks: Iterable[asyncio.Task[None]], event: asyncio.Event | None) -> None:
    """Returns when the first of `tasks` ends or `event` is set; the tasks keep running."""
    setting = None if event is None else asyncio.ensure_future(event.wait())
    try:
        await asyncio.wait(
            [*tasks, *([setting] if setting else [])], return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        if setting is not None:
            setting.cancel()


@dataclass
class _SweepRun:
    """What every part of one sweep reads and fills: the store, each key's target bar, the
    results per key, the predictions computed here, and the event set once its Triton requests
    are out (the next sweep may start)."""

    store: BarStore
    targets: dict[FeatureKey, datetime]
    handoff: asyncio.Event
    background: set[FeatureKey]  # keys nobody here waits for (the poller's)
    watched_elsewhere: frozenset[Series] | None = None  # read once, by the first claim
    results: dict[FeatureKey, Prediction | BaseException] = field(default_factory=dict)
    computed: list[Prediction] = field(default_factory=list)
    shared: list[SharedPrediction] = field(default_factory=list)  # what the others get of them


class BarCloseEngine:
    def __init__(
        self,
        database: Callable[[], Awaitable[Database]],
        models_for: Callable[[str], SignalModels],
        served_timeframes: Iterable[str],
        *,
        poll_interval_s: float = 0.05,
        sweeps_in_flight: int = 2,
        max_batch: int = 256,
        shared: SharedPredictions | None = None,
        publish: Callable[[bytes], None] | None = None,
        snapshot_path: Path | None = None,
        snapshot_interval_s: float = 600.0,
        seed_processes: int = 1,
    ) -> None:
        self._database = database
        self._models_for = models_for
        self.max_batch = max_batch
        if sweeps_in_flight < 1:
            raise ValueError(
                f"sweeps_in_flight must be 1 or more, got {sweeps_in_flight}: set SWEEPS_IN_FLIGHT "
                "to 2 (overlapped) or 1 (one after another)"
            )
        self.sweeps_in_flight = sweeps_in_flight
        self.latest: dict[FeatureKey, Prediction] = {}
        self.series = SeriesIndex()  # newest bar, stored timeframe and revision per series
        self._urgent: dict[tuple[FeatureKey, datetime], asyncio.Future[Prediction]] = {}
        self._background: dict[tuple[FeatureKey, datetime], asyncio.Future[Prediction]] = {}
        self._running: dict[tuple[FeatureKey, datetime], asyncio.Future[Prediction]] = {}
        # the series revision each running token's sweep started from (a correction since:
        # joining it would answer from the old history)
        self._running_from: dict[tuple[FeatureKey, datetime], int] = {}
        self._arrived = asyncio.Event()  # new work for a sweeper waiting on busy keys
        # claimed by another replica: resolved by its bar-close event (receive)
        self._remote: dict[tuple[FeatureKey, datetime], asyncio.Future[Prediction]] = {}
        self._shared = shared
        self._publish = publish
        self._sweeper: asyncio.Task[None] | None = None
        self._watched: set[FeatureKey] = set()  # series with a WebSocket feed open here
        self._watched_series: frozenset[Series] = frozenset()  # the same, as announced
        self._announcing: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[list[Prediction]], None]] = []
        # The adaptive intervals' level per (timeframe, version, spec): live quality's
        # QualityTracker.levels, wired by the app: the adaptive intervals' level and the
        # probabilities' shift; None keeps what was fitted.
        self.online_levels: Callable[[str, str, FeatureSpec, int], OnlineLevels | None] = (
            _fitted_levels
        )
        self.stats = BarCloseStats()
        self.heap = KEEPER  # the process's collector, kept off the sweeps
        self._states = FeatureStates(self.stats, self.series, snapshot_path, Seeder(seed_processes))
        self.snapshot_interval_s = snapshot_interval_s
        self._snapshot_at = time.monotonic()
        candidates = tuple(Timeframe(tf) for tf in served_timeframes)
        self.poller = BarClosePoller(self, database, models_for, candidates, poll_interval_s)

    # --- public ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._poller is None:
            self._poller = asyncio.create_task(self.poller.run(), name="barclose-poller")

    async def close(self) -> None:
        tasks = [t for t in (self._poller, self._sweeper) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._save_snapshot()
        self._states.close()
        if self._announcing is not None:
            self._announcing.cancel()
        if self._shared is not None and self._watched:
            await self._shared.announce(frozenset())  # this replica's clients are gone
        for pending in (self._urgent, self._background, self._running, self._remote):
            for future in pending.values():
                if not future.done():
                    future.cancel()

    @property
    def backlogged(self) -> bool:
        """More than a sweep's worth of keys queued: a key found now waits a sweep anyway."""
        return len(self._urgent) + len(self._background) >= MAX_KEYS_PER_SWEEP

    @property
    def idle(self) -> bool:
        """No sweep is running or queued (its counters are final until the next bar)."""
        return self._sweeper is None

    def forget(self, symbol: str) -> None:
        """Drops `symbol`'s feature states and predictions (its stored history was rewritten):
        the next sweep recomputes them from the store."""
        self._states.forget(symbol)
        for key in [k for k in self.latest if k[0] == symbol]:
            del self.latest[key]

    def trading_week(self, key: FeatureKey) -> TradingWeek | None:
        """When the key's market trades, as its feature state's seed bars showed (None before
        the key was seeded here)."""
        return self._states.weeks.get(key)

    def feature_inputs(self, key: FeatureKey) -> ModelInputs | None:
        """The network inputs of `key`'s newest bar from its feature state (None before it was
        seeded here): kept predictions drop their tensors, this recomputes them."""
        features = self._states.features(key)
        return None if features is None else features.inputs()

    def watch(self, key: FeatureKey, watching: bool) -> None:
        """A WebSocket feed opened on (or the last one left) `key`'s series. Watched series are
        swept ahead of the rest of their bar, in a sweep of their own, like a request that
        waits; the other replicas are told, so that their background sweeps leave these to
        this one (else this replica's client waits for another's whole sweep and its event)."""
        if watching:
            self._watched.add(key)
        else:
            self._watched.discard(key)
        self._watched_series = frozenset((symbol, tf.value) for symbol, tf in self._watched)
        self.announce_watched()

    def is_watched(self, key: FeatureKey) -> bool:
        return key in self._watched

    def announce_watched(self) -> None:
        """Tells the other replicas what this one watches when that changed or is due again
        (the poller calls this every poll); one announcement at a time."""
        if self._shared is None or self._announcing is not None:
            return
        if self._shared.due(self._watched_series):
            self._announcing = asyncio.create_task(self._announce(), name="barclose-announce")

    async def _announce(self) -> None:
        assert self._shared is not None
        try:
            while self._shared.due(watched := self._watched_series):
                await self._shared.announce(watched)
        finally:
            self._announcing = None

    def on_predictions(self, listener: Callable[[list[Prediction]], None]) -> None:
        """`listener` runs after every sweep with the predictions it produced."""
        self._listeners.append(listener)

    def request(
        self, key: FeatureKey, bar_time: datetime, *, urgent: bool = True
    ) -> tuple[asyncio.Future[Prediction], bool]:
        """(future of the prediction for `key`'s closed bar `bar_time` or a newer one, whether
        it joined a computation already pending or running for that bar). A new one enters the
        next sweep; `urgent` (a request waits) goes ahead of background work."""
        previous = self.series.bar_closed(key, bar_time)
        if urgent and (previous is None or bar_time > previous):
            self.poller.wake()  # the poller has not seen this bar yet: others may be new too
        token = (key, bar_time)
        for pending in (self._running, self._remote, self._urgent, self._background):
            future = pending.get(token)
            if future is None:
                continue
            if pending is self._running and self._running_from[token] != self.series.revision(key):
                continue  # started before a correction: a new computation follows it
            if urgent and pending is self._background:  # a request is now waiting for it
                self._urgent[token] = self._background.pop(token)
            return future, True
        future = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._background)[token] = future
        self._arrived.set()
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="barclose-sweeper")
        return future, False

    async def receive(self, payload: bytes) -> None:
        """Another replica's bar-close event: its predictions become ours (no inference here),
        the requests waiting for them are answered and the listeners told."""
        if self._shared is None:
            return
        received: dict[FeatureKey, Prediction] = {}
        for record in self._shared.decode_event(payload):
            key: FeatureKey = (record.symbol, Timeframe(record.timeframe))
            try:
                spec = await self._models_for(record.timeframe).spec(record.version)
            except Exception as exc:  # Triton away: the record stays in the cache for later
                log.debug("bar-close event for %s skipped: %s", key, exc)
                continue
            received[key] = prediction = record.prediction(spec)
            self._keep_latest(key, prediction)
            self.series.bar_closed(key, record.bar_time)
        # One pass over the waiting keys (an event carries a whole sweep, up to thousands).
        for token in [t for t in self._remote if t[0] in received]:
            prediction = received[token[0]]
            if token[1] <= prediction.bar_time:
                future = self._remote.pop(token)
                if not future.done():
                    future.set_result(prediction)
        serve_together(received.values())
        if received:
            produced = list(received.values())
            for listener in self._listeners:
                listener(produced)

    def _keep_latest(self, key: FeatureKey, prediction: Prediction) -> None:
        current = self.latest.get(key)
        if current is None or current.bar_time <= prediction.bar_time:
            self.latest[key] = prediction

    def _await_remote(
        self, waiting: dict[tuple[FeatureKey, datetime], asyncio.Future[Prediction]]
    ) -> None:
        """Keys another replica claimed: answered by its event; without one (a lost event, a
        replica that died) they are swept again after REMOTE_RECHECK_S, which takes them from the
        shared cache, or claims them once the other replica's claim has expired."""
        self._remote.update(waiting)

        def recheck() -> None:
            for token, future in waiting.items():
                if self._remote.get(token) is future and not future.done():
                    del self._remote[token]
                    self._urgent[token] = future
            self._arrived.set()
            if self._urgent and self._sweeper is None:
                self._sweeper = asyncio.create_task(self._sweep_forever(), name="barclose-sweeper")

        asyncio.get_running_loop().call_later(REMOTE_RECHECK_S, recheck)

    async def _save_snapshot(self) -> None:
        """The feature states to disk, between sweeps (a failure is logged: serving goes on)."""
        self._snapshot_at = time.monotonic()
        try:
            with self.heap.paused():  # ~1 s of full collections over what the save builds
                took_s = await self._states.save()
        except Exception as exc:
            log.warning("feature-state snapshot not written: %s", exc)
            return
        if took_s is not None:
            self.stats.snapshots_saved += 1
            self.stats.last_snapshot_ms = took_s * 1e3

    # --- sweeping -------------------------------------------------------------------------
    async def _sweep_forever(self) -> None:
        """Takes batches off the queues and runs them as sweeps, `sweeps_in_flight` at once: the
        next sweep starts once this one waits for Triton, so its features (this process's core)
        overlap this one's inference (Triton's core); after a sweep that went alone, once it
        ended. A key is never in two sweeps at once."""
        went_alone = False
        running: dict[asyncio.Task[None], set[FeatureKey]] = {}
        try:
            while True:
                busy = set().union(*running.values())
                batch, background, went_alone = self._next_batch(went_alone, busy)
                if batch:
                    self.stats.sweeps_overlapped += bool(running)
                    handoff = asyncio.Event()  # set once its requests are out, or it ended
                    sweep = asyncio.create_task(self._run_sweep(batch, background, handoff))
                    running[sweep] = {key for key, _ in batch}
                    if went_alone:
                        # Somebody waits for it: the next sweep's features (this core) would
                        # hold its answer until they yield, so that sweep starts once it ended.
                        await asyncio.wait({sweep})
                    else:
                        await handoff.wait()
                elif not running:  # nothing busy, so nothing queued either
                    self.heap.collect_if_due()
                    return
                full = len(running) >= self.sweeps_in_flight
                if full or not batch:
                    self._arrived.clear()  # new work may start a sweep while one runs
                    await _first_of(running, None if full else self._arrived)
                for sweep in [t for t in running if t.done()]:
                    del running[sweep]
                if time.monotonic() - self._snapshot_at >= self.snapshot_interval_s:
                    # Nothing may step the states while they are written: let the sweeps end.
                    await asyncio.gather(*running)
                    running.clear()
                    await self._save_snapshot()
                    self.heap.collect_if_due()
        finally:
            for sweep in running:
                sweep.cancel()
            for sweep in running:
                with contextlib.suppress(asyncio.CancelledError):
                    await sweep
            self._sweeper = None

    def _next_batch(
        self, went_alone: bool, busy: set[FeatureKey]
    ) -> tuple[
        dict[tuple[FeatureKey, datetime], asyncio.Future[Prediction]], set[FeatureKey], bool
    ]:
        """The next sweep's tokens (none of a busy key), the keys among them nobody waits for,
        and whether they go alone. What somebody waits for goes alone: its answer does not wait
        for the features and inference of hundreds of background keys. Only once in a row, so
        a steady trickle of requests cannot hold the background back."""
        batch = {t: f for t, f in self._urgent.items() if t[0] not in busy}
        for token in batch:
            del self._urgent[token]
        waited_for = {key for key, _ in batch}
        background = [t for t in self._background if t[0] not in busy]
        alone = bool(batch) and bool(background) and not went_alone
        if not alone:
            for token in background[: max(0, MAX_KEYS_PER_SWEEP - len(batch))]:
                batch[token] = self._background.pop(token)
        return batch, {key for key, _ in batch} - waited_for, alone

    async def _run_sweep(
        self,
        batch: dict[tuple[FeatureKey, datetime], asyncio.Future[Prediction]],
        background: set[FeatureKey],
        handoff: asyncio.Event,
    ) -> None:
        """One sweep; a failure it did not map fails its waiters instead of the sweeper."""
        self._running.update(batch)
        self._running_from.update((token, self.series.revision(token[0])) for token in batch)
        started = time.perf_counter()
        self.stats.last_sweep_at = time.time()
        try:
            with self.heap.paused():  # what a sweep leaves is long-lived: frozen after (heap.py)
                await self._sweep(batch, background, handoff)
        except Exception as exc:  # a bug or an unmapped failure: fail the waiters
            log.exception("bar-close sweep failed")
            for future in batch.values():
                if not future.done():
                    future.set_exception(exc)
                    future.exception()
        finally:
            handoff.set()
            for token, future in batch.items():
                if self._running.get(token) is future:
                    del self._running[token]
                    del self._running_from[token]
        self.stats.sweeps += 1
        self.stats.last_sweep_keys = len(batch)
        self.stats.last_sweep_ms = (time.perf_counter() - started) * 1e3

    async def _sweep(
        self,
        batch: dict[tuple[FeatureKey, datetime], asyncio.Future[Prediction]],
        background: set[FeatureKey],
        handoff: asyncio.Event,
    ) -> None:
        targets: dict[FeatureKey, datetime] = {}
        for key, bar_time in batch:
            targets[key] = max(bar_time, targets.get(key, bar_time))
        run = _SweepRun(BarStore(await self._database()), targets, handoff, background)
        results, computed = run.results, run.computed
        by_timeframe: dict[Timeframe, list[FeatureKey]] = {}
        for key in targets:
            by_timeframe.setdefault(key[1], []).append(key)
        for timeframe, keys in by_timeframe.items():
            await self._sweep_timeframe(run, timeframe, keys)
        elsewhere = {}
        for token, future in batch.items():
            result = results.get(token[0])
            if future.done():
                continue
            if result is None:  # claimed by another replica, or left to its watcher
                current = self.latest.get(token[0])
                if current is not None and current.bar_time >= token[1]:
                    # Its event arrived while this sweep ran, before anyone waited for it: a
                    # wait now would last until the recheck (and hold the poller that long).
                    future.set_result(current)
                else:
                    elsewhere[token] = future
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
                future.exception()  # retrieved: each waiter re-raises it, nobody else must
            else:
                future.set_result(result)
        if elsewhere:
            self._await_remote(elsewhere)
        produced = []
        for result in results.values():
            if isinstance(result, Prediction):
                produced.append(result)
            else:
                self.stats.count_failure(result)
        self.stats.predictions += len(computed)
        # The listeners first: the stream's messages are rendered while the share awaits Redis.
        with self.stats.timed("listeners"):
            for listener in self._listeners:
                listener(produced)
        if self._shared is not None and run.shared:
            with self.stats.timed("share"):
                await self._shared.share(run.shared, self._publish)

    async def _sweep_timeframe(
        self, run: _SweepRun, timeframe: Timeframe, keys: list[FeatureKey]
    ) -> None:
        """Predictions of `keys` into `run.results`; with replicas, only of those claimed here
        (the others get no entry and wait for the claiming replica's event). Each bar goes to
        the version that answers it (a promotion names the first bar of the new one)."""
        models = self._models_for(timeframe.value)
        try:
            serving = await models.serving()
        except Exception as exc:
            run.results.update(dict.fromkeys(keys, exc))
            return
        by_version: dict[str, list[FeatureKey]] = {}
        for key in keys:
            by_version.setdefault(serving.for_bar(run.targets[key]), []).append(key)
        for version, group in by_version.items():
            await self._sweep_version(run, timeframe, models, version, group)

    async def _sweep_version(
        self,
        run: _SweepRun,
        timeframe: Timeframe,
        models: SignalModels,
        version: str,
        keys: list[FeatureKey],
    ) -> None:
        claimed: dict[FeatureKey, Token] = {}
        try:
            spec = await models.spec(version)
            if self._shared is not None:
                with self.stats.timed("claims"):
                    claimed = await self._shared_or_claimed(run, version, spec, keys)
                keys = list(claimed)
        except Exception as exc:
            run.results.update(dict.fromkeys(keys, exc))
            return
        try:
            await self._compute(run, timeframe, models, version, spec, keys)
        finally:
            failed = [
                t for k, t in claimed.items() if not isinstance(run.results.get(k), Prediction)
            ]
            if failed and self._shared is not None:
                # Nothing to wait for: another replica (or this one after a restart) may try at
                # once instead of after the claim's lifetime.
                await self._shared.release(failed)

    async def _compute(
        self,
        run: _SweepRun,
        timeframe: Timeframe,
        models: SignalModels,
        version: str,
        spec: FeatureSpec,
        keys: list[FeatureKey],
    ) -> None:
        """Features, one Triton request per chunk (all in flight together), the head; the
        next sweep may start (`run.handoff`) once the requests are out."""
        if not keys:
            return
        results = run.results
        with self.stats.timed("features"):
            ready = await self._states.advance(
                run.store, spec, timeframe, keys, run.targets, results
            )
        with self.stats.timed("inputs"):
            states = list(ready.items())
            chunks = []
            for start in range(0, len(states), self.max_batch):
                chunk = states[start : start + self.max_batch]
                batch = batch_inputs([state for _, state in chunk])
                for position, refused in batch.refused.items():
                    results[chunk[position][0]] = refused  # a window not clean yet
                chunks.append(([chunk[i][0] for i in batch.accepted], batch))
            chunks = [(chunk_keys, batch) for chunk_keys, batch in chunks if chunk_keys]
        with self.stats.timed("triton"):
            requests = asyncio.gather(
                *(models.infer_arrays(b.seq, b.tab, b.ctx, version) for _, b in chunks),
                return_exceptions=True,
            )
            run.handoff.set()
            outcomes = await requests
        with self.stats.timed("head"):
            self._predictions(timeframe, spec, chunks, outcomes, run)

    def _predictions(
        self,
        timeframe: Timeframe,
        spec: FeatureSpec,
        chunks: list[tuple[list[FeatureKey], InputBatch]],
        outcomes: list[EnsembleOutput | BaseException],
        run: _SweepRun,
    ) -> None:
        """The served predictions of Triton's answers (the head applied per chunk), and the
        records the other replicas get of those kept."""
        results = run.results
        self.stats.triton_requests += len(chunks)
        levels_of: dict[str, OnlineLevels | None] = {}  # per version answering: once a sweep
        listed: dict[int, ListedLevels] = {}  # those levels as lists, for the shared records
        # Per distinct trading week (shared objects, a handful for thousands of symbols).
        horizons_of: dict[int, list[int]] = {}
        served_series = self.series.served(timeframe)
        for (chunk_keys, batch), outcome in zip(chunks, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                results.update(dict.fromkeys(chunk_keys, outcome))
                continue
            answered = outcome.model_version
            if answered not in levels_of:
                levels_of[answered] = self.online_levels(
                    timeframe.value, answered, spec, served_series
                )
            levels = levels_of[answered]
            # The head for the whole chunk at once: per prediction it was ~15 % of a sweep.
            served = apply_head(
                spec.head,
                outcome.gru_range,
                outcome.transformer_range,
                batch.har,
                batch.season,
                outcome.p_long,
                outcome.p_short,
                outcome.confidence,
                levels,
            )
            chunk: list[Prediction] = []
            kept: list[bool] = []
            for row, (key, row_inputs) in enumerate(zip(chunk_keys, batch.rows, strict=True)):
                week = self._states.weeks.get(key)
                horizons = horizons_of.get(id(week))
                if horizons is None:
                    horizons = horizons_of[id(week)] = spec.symbol_horizon_bars(week)
                prediction = Prediction(
                    key[0],
                    timeframe.value,
                    row_inputs.bar_time.to_pydatetime(),
                    answered,
                    spec,
                    row_inputs,
                    outcome.row(row),
                    self.series.revision(key),
                    levels=levels,
                    horizon_bars=horizons,
                    _served=served.row(row),
                )
                results[key] = prediction
                chunk.append(prediction)
                # Forgotten while Triton answered (a corrected bar: the poller dropped the
                # symbol and queued a recompute): its waiters get this answer, but it is
                # neither kept nor shared; the recompute's is.
                kept.append(self._states.features(key) is not None)
                if kept[-1]:
                    run.computed.append(prediction)
                    self._keep_latest(key, prediction)
            if self._shared is not None:  # other replicas to tell
                records = SharedPrediction.of_rows(chunk, outcome, batch.har, batch.season, listed)
                run.shared.extend(itertools.compress(records, kept))

    async def _shared_or_claimed(
        self, run: _SweepRun, version: str, spec: FeatureSpec, keys: list[FeatureKey]
    ) -> dict[FeatureKey, Token]:
        """Takes the keys' predictions another replica already shared; returns the keys this
        replica claimed and must compute, with their claims. A background key that a client
        watches on another replica is left to that one (its client would otherwise wait for
        this sweep and its event): it waits for that replica's event like a key claimed there,
        and is swept again after REMOTE_RECHECK_S if none comes."""
        assert self._shared is not None
        tokens = {(key, run.targets[key], version, self.series.revision(key)): key for key in keys}
        shared = []
        for token, record in (await self._shared.fetch(list(tokens))).items():
            key = tokens.pop(token)
            run.results[key] = prediction = record.prediction(spec)
            shared.append(prediction)
            self._keep_latest(key, prediction)
        serve_together(shared)
        background = [token for token, key in tokens.items() if key in run.background]
        if background and run.watched_elsewhere is None:
            run.watched_elsewhere = await self._shared.watched_elsewhere()
        for token in background:
            (symbol, timeframe), *_ = token
            if (symbol, timeframe.value) in (run.watched_elsewhere or ()):
                del tokens[token]
                self._shared.left_to_watchers += 1
        claimed = await self._shared.claim(list(tokens))
        return {tokens[token]: token for token in claimed}
