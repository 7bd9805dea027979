"""The bar-close poller: finds every (symbol, timeframe) whose newest closed bar moved, whoever
wrote it, and hands those keys to the engine as background work.

Every `poll_interval_s` it reads the bars table's last commit time (InnoDB's UPDATE_TIME, one
row of information_schema, ≈0.15 ms); only when that moved (or may hide a same-second commit) does
it read the newest bar of every series — one primary-key dive per symbol, ≈40 ms for 10,000
(BarStore.last_bar_times) — and the tiny `bar_revisions` table. Only the series whose newest bar
moved, whose history was rewritten, or whose last attempt failed and is due, are looked at; the
stored timeframe behind each key is handed to the engine, so sweeps need no per-symbol metadata
queries.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from orchestrator.features.online import NotEnoughHistoryError
from orchestrator.inference.client import SignalModels
from orchestrator.inference.prediction import FeatureKey, Prediction
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore, UnknownSymbolError
from orchestrator.marketdata.timeframes import Timeframe, is_multiple, newest_closed

if TYPE_CHECKING:
    from orchestrator.inference.barclose import BarCloseEngine

log = logging.getLogger("orchestrator.barclose")

SERVED_REFRESH_S = 10.0
FULL_SCAN_S = 5.0  # the newest-bar scan runs at least this often, whatever UPDATE_TIME says
FULL_SCAN_BUSY_S = 30.0  # the same while the engine is backlogged (a cold start)
DISCOVER_S = 60.0  # how often to look for series stored at a timeframe other than the base one
CLOCK_MARGIN_S = 0.25  # allowed difference between the database's clock and ours
SAME_SECOND_RESCAN_S = 0.2  # rescans for commits hidden in an already seen second, at most
BUSY_POLL_S = 0.2  # the poll interval while the engine has more than a sweep of keys queued
RETRY_S = 5.0  # a key whose dependency failed is retried after this long


@dataclass(frozen=True)
class _Failure:
    """When the poller tries a failed key again: a new bar retries at once, except for too little
    history (not before the missing bars can have landed); the same bar after RETRY_S when a
    dependency was away (Triton, the database), never when only a new bar can change it."""

    target: datetime
    retry_at: float  # monotonic time from which the same bar is tried again
    not_before: datetime | None = None  # no retry for bars older than this

    @classmethod
    def of(cls, failure: BaseException, key: FeatureKey, target: datetime) -> _Failure:
        if isinstance(failure, NotEnoughHistoryError):
            missing = max(1, failure.need - failure.have)
            later = key[1].advance(target, missing)
            return cls(target, math.inf, later)
        if isinstance(failure, UnknownSymbolError | ValueError):
            return cls(target, math.inf)
        return cls(target, time.monotonic() + RETRY_S)

    def too_young(self, newest: datetime) -> bool:
        """No bar up to `newest` (the stored series' newest) can have enough history: every
        closed bar of a coarser timeframe opens at or before it."""
        return self.not_before is not None and newest < self.not_before

    def skips(self, target: datetime, now: float) -> bool:
        if self.not_before is not None and target < self.not_before:
            return True
        return target == self.target and now < self.retry_at


def scan_due(
    updated: datetime | None,
    previous: datetime | None,
    scanned_wall: float,
    scanned_at: float,
    now_wall: float,
    now: float,
    busy: bool = False,
) -> bool:
    """Whether the newest-bar scan must run, from the bars table's last commit time.

    InnoDB keeps each table's last commit time (UPDATE_TIME, whole seconds, in memory): an
    unchanged value means no new bars, so the scan is skipped. A second commit within the same
    second leaves it unchanged, so until one scan has started after that second ended (plus
    CLOCK_MARGIN_S) it scans again, every SAME_SECOND_RESCAN_S rather than every poll: a
    10,000-symbol scan is ~40 ms of the database's core and 10,000 rows to read, and back to back
    they took a sixth of the event loop's time during the sweep that follows a commit. At least
    every FULL_SCAN_S whatever it says (clock skew, a server without UPDATE_TIME).
    `busy`: the engine has more than a sweep of keys queued, so what a rescan finds would wait
    behind them anyway: one rescan once the second is over, not one every SAME_SECOND_RESCAN_S
    (after a 10,000-symbol commit those were ~5 % of the event loop's time during the sweep),
    and the scan whatever UPDATE_TIME says only every FULL_SCAN_BUSY_S (a cold start of 10,000
    symbols' 30,000 series is a minute of sweeps, and a scan every 5 s cost MariaDB ~0.8 s).
    `scanned_wall`/`scanned_at`: when the last scan started (wall clock / monotonic)."""
    if updated is None or updated != previous:
        return True
    if now - scanned_at >= (FULL_SCAN_BUSY_S if busy else FULL_SCAN_S):
        return True
    second_over = updated.replace(tzinfo=UTC).timestamp() + 1.0 + CLOCK_MARGIN_S
    if scanned_wall >= second_over:
        return False  # a scan began after that second: it saw every commit of it
    return now_wall >= second_over or (not busy and now - scanned_at >= SAME_SECOND_RESCAN_S)


class BarClosePoller:
    def __init__(
        self,
        engine: BarCloseEngine,
        database: Callable[[], Awaitable[Database]],
        models_for: Callable[[str], SignalModels],
        candidates: tuple[Timeframe, ...],
        poll_interval_s: float,
    ) -> None:
        self._engine = engine
        self._database = database
        self._models_for = models_for
        self._candidates = candidates
        self.poll_interval_s = poll_interval_s
        self._served: tuple[Timeframe, ...] = ()
        self._served_at = -SERVED_REFRESH_S
        self._failed: dict[FeatureKey, _Failure] = {}
        # Of those, the ones tried again at a set time (a dependency was away): every poll reads
        # it, while most failures wait for new bars (20,000 young keys at 10,000 symbols).
        self._retry_at: dict[FeatureKey, float] = {}
        self._revisions_seen = False
        self._marks: dict[tuple[str, Timeframe], datetime] = {}
        self._scanned_for: tuple[Timeframe, ...] | None = None
        self._scanned_at = -FULL_SCAN_S
        self._scanned_wall = 0.0
        self._woken = asyncio.Event()
        self._bars_updated: datetime | None = None
        # Every stored series, for those at another timeframe than their symbol's base (the
        # scan's dives cover the base ones), refreshed every DISCOVER_S by a task of its own:
        # its index scan can take seconds and must not hold up a poll.
        self._stored: set[tuple[str, Timeframe]] = set()
        self._discovery: asyncio.Task[None] | None = None
        self._discovered_at = -DISCOVER_S

    async def run(self) -> None:
        """Polls until cancelled; its own failures (database away) back off and retry."""
        try:
            await self._poll_forever()
        finally:
            if self._discovery is not None:
                self._discovery.cancel()

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
            self._woken.clear()
            interval_s = self.poll_interval_s
            if self._engine.backlogged:  # new keys would queue behind a sweep's worth anyway
                interval_s = max(interval_s, BUSY_POLL_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._woken.wait(), interval_s)

    def wake(self) -> None:
        """Poll now: a request just found a bar the poller has not seen, and when one symbol's
        bar closed, usually many did (one scan then schedules them all in one sweep)."""
        self._woken.set()

    async def _poll(self) -> None:
        db = await self._database()
        store = BarStore(db)
        self._engine.stats.polls += 1
        self._engine.announce_watched()  # when due: the other replicas forget it otherwise
        now = time.monotonic()
        served = await self._served_timeframes(now)
        everything = served != self._scanned_for
        due = self._due_symbols(now)
        if not everything and not due and not await self._bars_may_have_changed(store):
            return
        self._scanned_at, self._scanned_wall = now, time.time()
        revised = self._forget_revised(await store.revisions())
        self._discover(store, now)
        marks = await store.last_bar_times(self._stored)
        if everything:
            changed = set(marks)
        else:  # only what moved, what was rewritten, and what failed and is due again
            changed = {k for k, _ in marks.items() - self._marks.items()}
            changed |= {k for k in marks if k[0] in revised or k[0] in due}
        self._marks, self._scanned_for = marks, served
        self._schedule(marks, changed, served, now)

    def _schedule(
        self,
        marks: dict[tuple[str, Timeframe], datetime],
        changed: set[tuple[str, Timeframe]],
        served: tuple[Timeframe, ...],
        now: float,
    ) -> None:
        """Background computations for every served timeframe of the changed stored series.
        The poll does not wait for them: a key waiting for another replica's event (up to
        REMOTE_RECHECK_S when that replica died) must not hold up the next bar's poll."""
        # Which served timeframe a stored one feeds: itself, and the coarser multiples the
        # symbol does not store itself (one lookup per pair, not per key).
        feeds = {
            stored: [t for t in served if t == stored or is_multiple(t, stored)]
            for stored in {stored for _, stored in changed}
        }
        for symbol, stored in changed:
            newest = marks[(symbol, stored)]
            for timeframe in feeds[stored]:
                if timeframe != stored and (symbol, timeframe) in marks:
                    continue  # stored at that timeframe too: its own series answers for it
                key = (symbol, timeframe)
                failed = self._failed.get(key)
                if failed is not None and failed.too_young(newest):
                    continue  # the common case at scale: 20,000 such keys for 10,000 symbols
                target = newest_closed(newest, stored, timeframe)
                self._engine.series.bar_closed(key, target, stored)
                latest = self._engine.latest.get(key)
                if latest is not None and latest.bar_time >= target:
                    continue
                if failed is not None and failed.skips(target, now):
                    continue
                urgent = self._engine.is_watched(key)
                future, _ = self._engine.request(key, target, urgent=urgent)
                future.add_done_callback(functools.partial(self._settled, key, target))

    def _settled(
        self, key: FeatureKey, target: datetime, future: asyncio.Future[Prediction]
    ) -> None:
        """Remembers when to try a failed key again. Failures are the requests' and the
        stream's to report; the poll only schedules."""
        if future.cancelled():
            return
        failure = future.exception()
        if failure is not None:
            failed = self._failed[key] = _Failure.of(failure, key, target)
            if math.isfinite(failed.retry_at):
                self._retry_at[key] = failed.retry_at
            else:
                self._retry_at.pop(key, None)
        else:
            self._failed.pop(key, None)
            self._retry_at.pop(key, None)

    def _discover(self, store: BarStore, now: float) -> None:
        if now - self._discovered_at < DISCOVER_S or self._discovery is not None:
            return
        self._discovered_at = now

        async def discover() -> None:
            try:
                self._stored = await store.stored_series()
            except Exception as exc:  # the database away: the next poll's scan says so
                log.debug("series discovery failed: %s", exc)
            finally:
                self._discovery = None

        self._discovery = asyncio.create_task(discover(), name="barclose-series-discovery")

    async def _bars_may_have_changed(self, store: BarStore) -> bool:
        """Whether to scan, from the bars table's last commit time (`scan_due`)."""
        updated = await store.bars_updated_at()
        previous, self._bars_updated = self._bars_updated, updated
        return scan_due(
            updated,
            previous,
            self._scanned_wall,
            self._scanned_at,
            time.time(),
            time.monotonic(),
            busy=self._engine.backlogged,
        )

    def _due_symbols(self, now: float) -> set[str]:
        """Symbols with a key whose dependency failed and is due for another try."""
        return {key[0] for key, retry_at in self._retry_at.items() if retry_at <= now}

    def _forget_revised(self, revisions: dict[tuple[str, Timeframe], int]) -> set[str]:
        """A series whose stored history was rewritten (a corrected or backfilled bar, see
        BarStore.upsert_rows) loses its feature states and predictions: they are recomputed
        from the store by this poll. Returns those symbols."""
        first_poll = not self._revisions_seen
        self._revisions_seen = True
        revised = set()
        for (symbol, stored), revision in revisions.items():
            changed = self._engine.series.revised((symbol, stored), revision)
            if not changed or first_poll:  # the same history, or nothing computed from it yet
                continue
            self._engine.stats.corrections += 1
            self._engine.forget(symbol)
            revised.add(symbol)
        return revised

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
