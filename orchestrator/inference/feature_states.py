"""Incremental feature state per (symbol, timeframe), kept in step with the store.

A sweep brings each key's state up to its newest closed bar: the new bars of every key are read
in one query per (source timeframe, resume point), and folded in O(1) each. The row at the
state's last bar must still be in the store unchanged; otherwise (a corrected or deleted bar),
after a restart, a new feature spec or a long gap, the state is recomputed from the store.
"""

from __future__ import annotations

import asyncio
import itertools
import operator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from orchestrator.features.incremental import Bar, IncrementalFeatures
from orchestrator.features.online import NotEnoughHistoryError, required_bars, seed_bars
from orchestrator.features.spec import FeatureSpec
from orchestrator.features.step_batch import step_together
from orchestrator.inference import seeding, snapshots
from orchestrator.inference.prediction import BarCloseStats, FeatureKey, Prediction
from orchestrator.inference.seeding import Seeder
from orchestrator.inference.series import SeriesIndex
from orchestrator.inference.snapshots import SavedState, spec_digest
from orchestrator.marketdata.calendars import CalendarStore
from orchestrator.marketdata.resample import resample_bars
from orchestrator.marketdata.sessions import TradingWeek, infer_week, shared_week
from orchestrator.marketdata.store import BarArrays, BarStore, bars_frame
from orchestrator.marketdata.timeframes import Timeframe

INLINE_UPDATES = 16  # fewer incremental updates than this run on the loop (a thread hop costs more)
MAX_STEPS = 2000  # more new bars than this: recompute from the tail instead of stepping
READS_IN_FLIGHT = 4  # seed-bar queries at once: the server's part overlaps the parsing here


@dataclass
class _State:
    spec: FeatureSpec
    features: IncrementalFeatures
    revision: int  # of the stored series it was computed from: a correction since, a reseed


class FeatureStates:
    def __init__(
        self,
        stats: BarCloseStats,
        series: SeriesIndex,
        snapshot_path: Path | None = None,
        seeder: Seeder | None = None,
    ) -> None:
        self._by_key: dict[FeatureKey, _State] = {}
        self._seeder = seeder or Seeder(1)
        self._series = series  # the stored timeframe and revision behind each key
        self.snapshot_path = snapshot_path
        self._saved: dict[FeatureKey, SavedState] | None = None  # the snapshot, until adopted
        self._from_peers: set[FeatureKey] = set()  # of _saved: read from another replica's file
        self._digests: dict[int, tuple[FeatureSpec, str]] = {}
        # Steps running in threads (one per sweep in flight), awaited before a snapshot.
        self._stepping: set[asyncio.Future[dict[FeatureKey, IncrementalFeatures]]] = set()
        # When each key's market trades: its stored calendar, else the bars its state was
        # seeded with; horizons and /api/predict's end times read it without a query.
        self.weeks: dict[FeatureKey, TradingWeek] = {}
        self.stats = stats

    def close(self) -> None:
        """Stops the seeding workers (if a cold start started them)."""
        self._seeder.close()

    def forget(self, symbol: str) -> None:
        """Drops every state of `symbol` (its stored history was rewritten)."""
        for key in [k for k in self._by_key if k[0] == symbol]:
            del self._by_key[key]

    def features(self, key: FeatureKey) -> IncrementalFeatures | None:
        state = self._by_key.get(key)
        return None if state is None else state.features

    def _digest(self, spec: FeatureSpec) -> str:
        known = self._digests.get(id(spec))
        if known is None or known[0] is not spec:
            known = self._digests[id(spec)] = (spec, spec_digest(spec))
        return known[1]

    def snapshot(self) -> dict[FeatureKey, SavedState]:
        """Every state with what it was computed from (taken between sweeps: nothing steps
        them while it is written)."""
        return {
            key: SavedState(
                self._digest(state.spec),
                state.revision,
                state.features,
                self.weeks.get(key),
            )
            for key, state in self._by_key.items()
        }

    async def save(self) -> float | None:
        """Writes the snapshot (seconds it took); None without a snapshot path or states."""
        if self.snapshot_path is None or not self._by_key:
            return None
        if self._stepping:
            await asyncio.wait(set(self._stepping))
        return await asyncio.to_thread(snapshots.save, self.snapshot_path, self.snapshot())

    def _resume(self, key: FeatureKey, spec: FeatureSpec, target: datetime) -> bool:
        """Adopts the snapshot's state of `key` when it was computed with this spec from the
        series as it is stored now, up to a bar not after `target`; the sweep then checks its
        last bar against the store and steps it over the newer bars."""
        assert self._saved is not None
        saved = self._saved.pop(key, None)
        if saved is None:
            return False
        if (
            saved.digest != self._digest(spec)
            or saved.revision != self._series.revision(key)
            or saved.features.last_time.to_pydatetime() > target  # the store lost bars
        ):
            self.stats.snapshot_refused += 1
            return False
        self._by_key[key] = _State(spec, saved.features, saved.revision)
        if saved.week is not None:
            self.weeks[key] = shared_week(saved.week)
        self.stats.states_resumed += 1
        if key in self._from_peers:
            self.stats.states_resumed_from_peers += 1
        return True

    async def advance(
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
        if self._saved is None:
            path = self.snapshot_path
            if path is None:
                self._saved = {}
            else:
                self._saved, self._from_peers = await asyncio.to_thread(snapshots.load_shared, path)
        for key in keys:
            state = self._by_key.get(key)
            resumed = False
            if state is None and self._saved and self._resume(key, spec, targets[key]):
                state, resumed = self._by_key[key], True
            if state is None or state.spec is not spec:
                to_seed.append(key)
            elif state.revision != self._series.revision(key):
                # Seeded from the history before a correction (a sweep that was running when
                # the poller forgot the series put it back).
                del self._by_key[key]
                to_seed.append(key)
            elif not resumed and state.features.last_time.to_pydatetime() >= targets[key]:
                ready[key] = state.features
            else:
                source = self._series.source(key)
                try:
                    if source is None:
                        source = await store.source_timeframe(key[0], timeframe)
                except Exception as exc:
                    results[key] = exc
                    continue
                since = state.features.last_time.to_pydatetime()
                to_step.setdefault((source, since), []).append(key)
        for (source, since), group in to_step.items():
            try:
                with self.stats.timed("features.read"):
                    new_bars = await self._bars_since(store, source, timeframe, since, group)
            except Exception as exc:
                results.update(dict.fromkeys(group, exc))
                continue
            with self.stats.timed("features.step"):
                stepped = await self._step(group, new_bars)
            for key in group:
                if key in stepped:
                    ready[key] = stepped[key]
                else:
                    to_seed.append(key)
        to_seed = await self._with_enough_history(store, spec, timeframe, to_seed, targets, results)
        stored = await self._stored_weeks(store, timeframe, to_seed)
        await self._seed_all(store, spec, to_seed, stored, ready, results)
        return ready

    async def _bars_since(
        self,
        store: BarStore,
        source: Timeframe,
        timeframe: Timeframe,
        since: datetime,
        keys: list[FeatureKey],
    ) -> dict[FeatureKey, list[Bar]]:
        """Closed `timeframe` bars from `since` (the state's last bar, to check it still holds)
        onward, for every key, in one query. Stored bars stay plain tuples (a DataFrame per
        symbol cost more than the feature updates); resampled ones go through resample_bars."""
        rows = await store.bar_rows_since(source, [symbol for symbol, _ in keys], since)
        per_symbol: dict[str, list[tuple[Any, ...]]] = {}
        for symbol, run in itertools.groupby(rows, operator.itemgetter(0)):  # ordered by symbol
            per_symbol.setdefault(symbol, []).extend(run)
        if source == timeframe:
            return {
                key: [
                    (r[1].replace(tzinfo=UTC), r[2], r[3], r[4], r[5], r[6])
                    for r in per_symbol.get(key[0], [])
                ]
                for key in keys
            }
        bars = {}
        for key in keys:
            frame = bars_frame([row[1:] for row in per_symbol.get(key[0], [])])
            if len(frame):
                frame = resample_bars(frame, timeframe, complete_only=True, base=source)
            bars[key] = [
                (ts.to_pydatetime(), *(float(v) for v in row))
                for ts, row in zip(frame.index, frame.to_numpy(), strict=True)
            ]
        return bars

    async def _step(
        self, keys: list[FeatureKey], new_bars: dict[FeatureKey, list[Bar]]
    ) -> dict[FeatureKey, IncrementalFeatures]:
        """Advances states whose stored history still ends with the state's last bar."""

        def run() -> dict[FeatureKey, IncrementalFeatures]:
            done = {}
            last_bars: list[tuple[FeatureKey, IncrementalFeatures, Bar]] = []
            for key in keys:
                features = self._by_key[key].features
                bars = new_bars[key]
                if not bars or len(bars) > MAX_STEPS:
                    continue
                first = bars[0]
                if first[0] != features.last_time or first[1:] != features.last_bar:
                    self.stats.corrections += 1
                    continue
                try:
                    for bar in bars[1:-1]:
                        features.update(*bar)
                except ValueError:  # a bar the state refuses: recompute from the store instead
                    del self._by_key[key]
                    continue
                if len(bars) > 1:
                    last_bars.append((key, features, bars[-1]))
                else:
                    done[key] = features
            # Each key's newest bar, the usual only one, stepped together (step_batch.py).
            refused = step_together([(features, bar) for _, features, bar in last_bars])
            for (key, features, _), error in zip(last_bars, refused, strict=True):
                if error is None:
                    self.stats.bars_stepped += len(new_bars[key]) - 1
                    done[key] = features
                else:
                    del self._by_key[key]
            return done

        steps = sum(len(bars) for bars in new_bars.values())
        if steps < INLINE_UPDATES:
            return run()
        # Shielded and remembered: a cancelled sweep (shutdown) leaves the thread running, and
        # the snapshot written next must wait for it rather than read half-stepped states.
        stepping = asyncio.ensure_future(asyncio.to_thread(run))
        self._stepping.add(stepping)
        stepping.add_done_callback(self._stepping.discard)
        return await asyncio.shield(stepping)

    async def _with_enough_history(
        self,
        store: BarStore,
        spec: FeatureSpec,
        timeframe: Timeframe,
        keys: list[FeatureKey],
        targets: dict[FeatureKey, datetime],
        results: dict[FeatureKey, Prediction | BaseException],
    ) -> list[FeatureKey]:
        """The keys whose stored series can hold enough bars to seed; the others are refused
        from their first bar's time alone (one query for all), without reading their bars: a
        young symbol at a coarse timeframe (a few days of 5m bars served at 1h) is refused at
        every restart, and reading and resampling its bars cost as much as seeding."""
        if timeframe.calendar_aligned or not keys:  # weeks and months: no fixed bar length
            return keys
        need = required_bars(spec)
        by_source: dict[Timeframe, list[FeatureKey]] = {}
        for key in keys:
            by_source.setdefault(self._series.source(key) or timeframe, []).append(key)
        kept: list[FeatureKey] = []
        for source, group in by_source.items():
            try:
                first = await store.first_bar_times(source, [key[0] for key in group])
            except Exception:  # the seed reads tell instead
                kept += group
                continue
            for key in group:
                start = first.get(key[0])
                if start is None:
                    kept.append(key)
                    continue
                # At most one bar per `timeframe` step from the first stored bar to the target.
                span = targets[key] - timeframe.floor(start)
                most = int(span.total_seconds() // timeframe.seconds) + 1
                if most < need:
                    results[key] = NotEnoughHistoryError(most, need)
                else:
                    kept.append(key)
        return kept

    @staticmethod
    async def _stored_weeks(
        store: BarStore, timeframe: Timeframe, keys: list[FeatureKey]
    ) -> dict[str, TradingWeek]:
        """The stored calendars of the keys about to be seeded, in one query (none when the
        read fails: the seed bars tell instead)."""
        if not keys:
            return {}
        try:
            return await CalendarStore(store.db).weeks([key[0] for key in keys], timeframe)
        except Exception:
            return {}

    async def _seed_all(
        self,
        store: BarStore,
        spec: FeatureSpec,
        keys: list[FeatureKey],
        weeks: dict[str, TradingWeek],
        ready: dict[FeatureKey, IncrementalFeatures],
        results: dict[FeatureKey, Prediction | BaseException],
    ) -> None:
        """Reads the keys' bars (READS_IN_FLIGHT queries at once) and seeds them
        seeding.SEED_BATCH keys at a time: while one batch seeds (in a thread, or in the
        seeding workers when the sweep is large), the next batch's bars are read."""
        pooled = self._seeder.pooled(len(keys))
        reads = asyncio.Semaphore(READS_IN_FLIGHT)
        seeding_slots = asyncio.Semaphore(self._seeder.processes if pooled else 1)

        async def read(key: FeatureKey) -> tuple[int, BarArrays]:
            async with reads:
                revision = self._series.revision(key)  # before the read: a correction reseeds
                source = self._series.source(key) or await store.source_timeframe(*key)
                bars = await store.latest_bar_arrays(*key, seed_bars(spec), source=source)
                return revision, bars

        async def seed(batch: list[tuple[FeatureKey, int, BarArrays]]) -> None:
            try:
                seeded = await self._seeder.seed([bars for _, _, bars in batch], spec, pooled)
            except Exception as exc:
                results.update({key: exc for key, _, _ in batch})
                return
            finally:
                seeding_slots.release()
            for (key, revision, bars), features in zip(batch, seeded, strict=True):
                if isinstance(features, BaseException):
                    results[key] = features
                    continue
                self._by_key[key] = _State(spec, features, revision)
                week = weeks.get(key[0])
                if week is None:
                    week = infer_week(pd.to_datetime(bars.times, unit="s", utc=True), key[1])
                self.weeks[key] = week
                self.stats.seeds += 1
                ready[key] = features

        batches: list[asyncio.Task[None]] = []
        try:
            size = seeding.SEED_BATCH
            for start in range(0, len(keys), size):
                chunk = keys[start : start + size]
                answers = await asyncio.gather(
                    *(read(key) for key in chunk), return_exceptions=True
                )
                batch: list[tuple[FeatureKey, int, BarArrays]] = []
                for key, answer in zip(chunk, answers, strict=True):
                    if isinstance(answer, BaseException):
                        results[key] = answer
                    else:
                        batch.append((key, *answer))
                if batch:
                    await seeding_slots.acquire()
                    batches.append(asyncio.create_task(seed(batch)))
        finally:
            if batches:
                await asyncio.gather(*batches)
