"""Bar-close serving: every symbol's prediction computed when its bar closes, in batches.

A poller reads the newest stored bar of every (symbol, timeframe) with one indexed scan every
`poll_interval_s`; whoever wrote the bar (the engine's ingest, the replay, any other MySQL
writer). Keys whose newest closed bar moved go to the sweeper, which:

1. reads the new bars of all of them in one query per (source timeframe, resume point),
2. advances each key's incremental feature state by those bars (O(1) per bar; a full recompute
   from the store after a restart, a spec change or when the stored bars no longer continue the
   state: a corrected or deleted bar),
3. asks Triton for all their predictions at once (chunks of the ensemble's max batch size, in
   flight together, so dynamic batching sees full batches),
4. stores each prediction as the key's latest and wakes the WebSocket hub.

Requests use the same sweeper: `request(key, bar_time)` joins a computation already pending or
running for that bar (single-flight), otherwise it enters the next sweep ahead of background
work. One sweep runs at a time; keys that arrive meanwhile form the next batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import pandas as pd

from orchestrator.features.incremental import IncrementalFeatures
from orchestrator.features.online import ModelInputs, NotEnoughHistoryError, required_bars
from orchestrator.features.spec import FeatureSpec
from orchestrator.inference.client import EnsembleOutput, SignalModels
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.resample import resample_bars
from orchestrator.marketdata.store import SELECT_BAR_VALUES, BarStore, UnknownSymbolError
from orchestrator.marketdata.timeframes import Timeframe, is_multiple, newest_closed
from orchestrator.marketdata.watermarks import all_newest

log = logging.getLogger("orchestrator.barclose")

FeatureKey = tuple[str, Timeframe]  # (symbol, served timeframe)
MAX_KEYS_PER_SWEEP = 1024  # bounds a request's wait behind background work (startup seeding)
INLINE_UPDATES = 16  # fewer incremental updates than this run on the loop (a thread hop costs more)
CATALOGUE_REFRESH_S = 5.0
SERVED_REFRESH_S = 10.0
MAX_STEPS = 2000  # more new bars than this: recompute from the tail instead of stepping
RETRY_S = 5.0  # a key whose dependency failed is retried by the poller after this long


def _retry_at(failure: BaseException) -> float:
    """When the poller tries a failed key again for the same bar: never for what only a new bar
    can change (too little history, unknown symbol); after RETRY_S for a dependency that was
    away (Triton, the database)."""
    if isinstance(failure, NotEnoughHistoryError | UnknownSymbolError | ValueError):
        return math.inf
    return time.monotonic() + RETRY_S


@dataclass(eq=False)
class Prediction:
    """One model answer for one closed bar; `encoded` memoises response bodies built from it."""

    symbol: str
    timeframe: str
    bar_time: datetime
    version: str
    spec: FeatureSpec
    inputs: ModelInputs
    out: EnsembleOutput
    encoded: dict[str, bytes] = field(default_factory=dict)


@dataclass
class _State:
    spec: FeatureSpec
    features: IncrementalFeatures


@dataclass
class BarCloseStats:
    sweeps: int = 0
    predictions: int = 0
    seeds: int = 0  # full recomputes (restart, spec change, corrected bar)
    bars_stepped: int = 0  # incremental updates
    corrections: int = 0  # stored bars that no longer continued a state
    triton_requests: int = 0
    errors: int = 0
    polls: int = 0
    last_sweep_keys: int = 0
    last_sweep_ms: float = 0.0


class BarCloseEngine:
    def __init__(
        self,
        database: Callable[[], Awaitable[Database]],
        models_for: Callable[[str], SignalModels],
        served_timeframes: Iterable[str],
        *,
        poll_interval_s: float = 0.2,
        max_batch: int = 256,
    ) -> None:
        self._database = database
        self._models_for = models_for
        self._candidates = tuple(Timeframe(tf) for tf in served_timeframes)
        self.poll_interval_s = poll_interval_s
        self.max_batch = max_batch
        self.latest: dict[FeatureKey, Prediction] = {}
        self.known: dict[FeatureKey, datetime] = {}  # newest closed bar seen per key
        self._states: dict[FeatureKey, _State] = {}
        self._urgent: dict[tuple[FeatureKey, datetime], asyncio.Future[Prediction]] = {}
        self._background: dict[tuple[FeatureKey, datetime], asyncio.Future[Prediction]] = {}
        self._running: dict[tuple[FeatureKey, datetime], asyncio.Future[Prediction]] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._poller: asyncio.Task[None] | None = None
        self._listeners: list[Callable[[list[Prediction]], None]] = []
        self._served: tuple[Timeframe, ...] = ()
        self._failed: dict[FeatureKey, tuple[datetime, float]] = {}
        self._revisions: dict[tuple[str, Timeframe], int] = {}
        self._revisions_seen = False
        self._served_at = -SERVED_REFRESH_S
        self._catalogue_at = -CATALOGUE_REFRESH_S
        self.stats = BarCloseStats()

    # --- public ---------------------------------------------------------------------------
    def start(self) -> None:
        if self._poller is None:
            self._poller = asyncio.create_task(self._poll_forever(), name="barclose-poller")

    async def close(self) -> None:
        tasks = [t for t in (self._poller, self._sweeper) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for pending in (self._urgent, self._background, self._running):
            for future in pending.values():
                if not future.done():
                    future.cancel()

    def on_predictions(self, listener: Callable[[list[Prediction]], None]) -> None:
        """`listener` runs after every sweep with the predictions it produced."""
        self._listeners.append(listener)

    def request(
        self, key: FeatureKey, bar_time: datetime, *, urgent: bool = True
    ) -> tuple[asyncio.Future[Prediction], bool]:
        """(future of the prediction for `key`'s closed bar `bar_time` or a newer one, whether
        it joined a computation already pending or running for that bar). A new one enters the
        next sweep; `urgent` (a request waits) goes ahead of background work."""
        self.known[key] = max(bar_time, self.known.get(key, bar_time))
        token = (key, bar_time)
        for pending in (self._running, self._urgent, self._background):
            future = pending.get(token)
            if future is not None:
                if urgent and pending is self._background:  # a request is now waiting for it
                    self._urgent[token] = self._background.pop(token)
                return future, True
        future = asyncio.get_running_loop().create_future()
        (self._urgent if urgent else self._background)[token] = future
        if self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep_forever(), name="barclose-sweeper")
        return future, False

    # --- sweeping -------------------------------------------------------------------------
    async def _sweep_forever(self) -> None:
        try:
            while self._urgent or self._background:
                batch = dict(self._urgent)
                self._urgent.clear()
                for token in list(self._background)[: max(0, MAX_KEYS_PER_SWEEP - len(batch))]:
                    batch[token] = self._background.pop(token)
                self._running = batch
                started = time.perf_counter()
                try:
                    await self._sweep(batch)
                except Exception as exc:  # a bug or an unmapped failure: fail the waiters
                    log.exception("bar-close sweep failed")
                    for future in batch.values():
                        if not future.done():
                            future.set_exception(exc)
                            future.exception()
                self._running = {}
                self.stats.sweeps += 1
                self.stats.last_sweep_keys = len(batch)
                self.stats.last_sweep_ms = (time.perf_counter() - started) * 1e3
        finally:
            self._sweeper = None

    async def _sweep(
        self, batch: dict[tuple[FeatureKey, datetime], asyncio.Future[Prediction]]
    ) -> None:
        targets: dict[FeatureKey, datetime] = {}
        for key, bar_time in batch:
            targets[key] = max(bar_time, targets.get(key, bar_time))
        results: dict[FeatureKey, Prediction | BaseException] = {}
        db = await self._database()
        store = BarStore(db)
        by_timeframe: dict[Timeframe, list[FeatureKey]] = {}
        for key in targets:
            by_timeframe.setdefault(key[1], []).append(key)
        for timeframe, keys in by_timeframe.items():
            await self._sweep_timeframe(store, timeframe, keys, targets, results)
        produced = []
        for (key, _), future in batch.items():
            result = results[key]
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
                future.exception()
            else:
                future.set_result(result)
        for result in results.values():
            if isinstance(result, Prediction):
                produced.append(result)
            else:
                self.stats.errors += 1
        self.stats.predictions += len(produced)
        for listener in self._listeners:
            listener(produced)

    async def _sweep_timeframe(
        self,
        store: BarStore,
        timeframe: Timeframe,
        keys: list[FeatureKey],
        targets: dict[FeatureKey, datetime],
        results: dict[FeatureKey, Prediction | BaseException],
    ) -> None:
        models = self._models_for(timeframe.value)
        try:
            spec = await models.spec()
        except Exception as exc:
            results.update(dict.fromkeys(keys, exc))
            return
        ready = await self._advance(store, spec, timeframe, keys, targets, results)
        keys_ready, inputs = [], []
        for key, state in ready.items():
            try:
                inputs.append(state.inputs())
            except Exception as exc:  # a non-finite window: not enough clean history yet
                results[key] = exc
                continue
            keys_ready.append(key)
        chunks = [
            (keys_ready[i : i + self.max_batch], inputs[i : i + self.max_batch])
            for i in range(0, len(inputs), self.max_batch)
        ]
        outcomes = await asyncio.gather(
            *(models.infer(chunk) for _, chunk in chunks), return_exceptions=True
        )
        self.stats.triton_requests += len(chunks)
        for (chunk_keys, chunk_inputs), outcome in zip(chunks, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                results.update(dict.fromkeys(chunk_keys, outcome))
                continue
            for row, (key, row_inputs) in enumerate(zip(chunk_keys, chunk_inputs, strict=True)):
                prediction = Prediction(
                    key[0],
                    timeframe.value,
                    row_inputs.bar_time.to_pydatetime(),
                    outcome.model_version,
                    spec,
                    row_inputs,
                    outcome.row(row),
                )
                results[key] = prediction
                current = self.latest.get(key)
                if current is None or current.bar_time <= prediction.bar_time:
                    self.latest[key] = prediction

    async def _advance(
        self,
        store: BarStore,
        spec: FeatureSpec,
        timeframe: Timeframe,
        keys: list[FeatureKey],
        targets: dict[FeatureKey, datetime],
        results: dict[FeatureKey, Prediction | BaseException],
    ) -> dict[FeatureKey, IncrementalFeatures]:
        """Feature states at (or past) each key's target bar; failures land in `results`."""
        ready: dict[FeatureKey, IncrementalFeatures] = {}
        to_seed: list[FeatureKey] = []
        to_step: dict[tuple[Timeframe, datetime], list[FeatureKey]] = {}
        for key in keys:
            state = self._states.get(key)
            if state is None or state.spec is not spec:
                to_seed.append(key)
            elif state.features.last_time.to_pydatetime() >= targets[key]:
                ready[key] = state.features
            else:
                try:
                    source = await store.source_timeframe(key[0], timeframe)
                except Exception as exc:
                    results[key] = exc
                    continue
                since = state.features.last_time.to_pydatetime()
                to_step.setdefault((source, since), []).append(key)
        for (source, since), group in to_step.items():
            try:
                new_bars = await self._bars_since(store, source, timeframe, since, group)
            except Exception as exc:
                results.update(dict.fromkeys(group, exc))
                continue
            stepped = await self._step(group, new_bars)
            for key in group:
                if key in stepped:
                    ready[key] = stepped[key]
                else:
                    to_seed.append(key)
        for key in to_seed:
            try:
                ready[key] = await self._seed(store, spec, key)
            except Exception as exc:
                results[key] = exc
        return ready

    async def _bars_since(
        self,
        store: BarStore,
        source: Timeframe,
        timeframe: Timeframe,
        since: datetime,
        keys: list[FeatureKey],
    ) -> dict[FeatureKey, pd.DataFrame]:
        """Closed `timeframe` bars from `since` (the state's last bar, to check it still holds)
        onward, for every key, in one query."""
        symbols = [symbol for symbol, _ in keys]
        marks = ",".join(["%s"] * len(symbols))
        rows = await store.db.fetchall(
            f"SELECT symbol, {SELECT_BAR_VALUES} FROM bars WHERE timeframe = %s"
            f" AND symbol IN ({marks}) AND ts >= %s ORDER BY symbol, ts",
            (source.value, *symbols, since.replace(tzinfo=None)),
        )
        per_symbol: dict[str, list[tuple[object, ...]]] = {}
        for row in rows:
            per_symbol.setdefault(row[0], []).append(row[1:])
        frames = {}
        for key in keys:
            frame = BarStore.frame(per_symbol.get(key[0], []))
            if source != timeframe and len(frame):
                frame = resample_bars(frame, timeframe, complete_only=True, base=source)
            frames[key] = frame
        return frames

    async def _step(
        self, keys: list[FeatureKey], new_bars: dict[FeatureKey, pd.DataFrame]
    ) -> dict[FeatureKey, IncrementalFeatures]:
        """Advances states whose stored history still ends with the state's last bar."""

        def run() -> dict[FeatureKey, IncrementalFeatures]:
            done = {}
            for key in keys:
                features = self._states[key].features
                frame = new_bars[key]
                if not len(frame) or len(frame) > MAX_STEPS:
                    continue
                values = frame.to_numpy()
                first = tuple(float(v) for v in values[0])
                if frame.index[0] != features.last_time or first != features.last_bar:
                    self.stats.corrections += 1
                    continue
                try:
                    for ts, row in zip(frame.index[1:], values[1:], strict=True):
                        features.update(ts, *(float(v) for v in row))
                except ValueError:  # a bar the state refuses: recompute from the store instead
                    del self._states[key]
                    continue
                self.stats.bars_stepped += len(frame) - 1
                done[key] = features
            return done

        steps = sum(len(f) for f in new_bars.values())
        return run() if steps < INLINE_UPDATES else await asyncio.to_thread(run)

    async def _seed(
        self, store: BarStore, spec: FeatureSpec, key: FeatureKey
    ) -> IncrementalFeatures:
        bars = await store.latest_bars(key[0], key[1], required_bars(spec), closed_only=True)
        features = await asyncio.to_thread(IncrementalFeatures.seed, bars, spec)
        self._states[key] = _State(spec, features)
        self.stats.seeds += 1
        return features

    # --- polling --------------------------------------------------------------------------
    async def _poll_forever(self) -> None:
        failures = 0
        while True:
            try:
                await self._poll()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # database or Triton away: retried with backoff
                failures += 1
                if failures == 1:
                    log.warning("bar-close poll failed (retrying): %s", exc)
                await asyncio.sleep(min(5.0, self.poll_interval_s * 2**failures))
                continue
            await asyncio.sleep(self.poll_interval_s)

    async def _poll(self) -> None:
        db = await self._database()
        store = BarStore(db)
        marks = await all_newest(db)
        self.stats.polls += 1
        now = time.monotonic()
        if now - self._catalogue_at >= CATALOGUE_REFRESH_S:
            await store.refresh_catalogue(marks)
            self._catalogue_at = now
        self._forget_revised(await store.revisions())
        served = await self._served_timeframes(now)
        stored_by_symbol: dict[str, set[Timeframe]] = {}
        for symbol, stored in marks:
            stored_by_symbol.setdefault(symbol, set()).add(stored)
        wanted: list[tuple[FeatureKey, datetime, asyncio.Future[Prediction]]] = []
        for (symbol, stored), newest in marks.items():
            for timeframe in served:
                if timeframe != stored and (
                    timeframe in stored_by_symbol[symbol] or not is_multiple(timeframe, stored)
                ):
                    continue
                key = (symbol, timeframe)
                target = newest_closed(newest, stored, timeframe)
                self.known[key] = target
                latest = self.latest.get(key)
                if latest is not None and latest.bar_time >= target:
                    continue
                failed = self._failed.get(key)
                if failed is not None and failed[0] == target and now < failed[1]:
                    continue  # not every poll: see _retry_at
                wanted.append((key, target, self.request(key, target, urgent=False)[0]))
        outcomes = await asyncio.gather(*(f for _, _, f in wanted), return_exceptions=True)
        for (key, target, _), outcome in zip(wanted, outcomes, strict=True):
            # Failures are the requests' and the stream's to report; the poll only schedules.
            if isinstance(outcome, BaseException):
                self._failed[key] = (target, _retry_at(outcome))
            else:
                self._failed.pop(key, None)

    def _forget_revised(self, revisions: dict[tuple[str, Timeframe], int]) -> None:
        """A series whose stored history was rewritten (a corrected or backfilled bar, see
        BarStore.upsert_rows) loses its feature states and predictions: they are recomputed
        from the store by this poll."""
        first_poll = not self._revisions_seen
        self._revisions_seen = True
        for (symbol, stored), revision in revisions.items():
            if self._revisions.get((symbol, stored)) == revision:
                continue
            self._revisions[(symbol, stored)] = revision
            if first_poll:
                continue  # nothing computed yet
            self.stats.corrections += 1
            for key in [k for k in self._states if k[0] == symbol]:
                del self._states[key]
            for key in [k for k in self.latest if k[0] == symbol]:
                del self.latest[key]

    async def _served_timeframes(self, now: float) -> tuple[Timeframe, ...]:
        """Timeframes whose ensemble Triton serves, re-checked every SERVED_REFRESH_S."""
        if now - self._served_at < SERVED_REFRESH_S and self._served:
            return self._served
        served = []
        for timeframe in self._candidates:
            with contextlib.suppress(Exception):
                await self._models_for(timeframe.value).served_version()
                served.append(timeframe)
        self._served, self._served_at = tuple(served), now
        return self._served
