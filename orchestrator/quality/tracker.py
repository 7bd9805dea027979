"""Live model quality: what was served, compared with what happened once each horizon elapsed.

The predictions the bar-close engine holds (computed here or received from another replica) are
kept until their horizons have passed; at each horizon every s-th bar's prediction is scored and
counted s times (totals.strides: about 24 open per horizon and key, where every bar's would be
up to 1,440 at a 5m key's 5-day horizon, ~2 MB per key). A background pass reads the bars that
closed since the key's last read (one small query per symbol and timeframe) and resolves what is
due:
- per horizon: was the realised high / low inside its 80 % interval, and the squared error of the
  served range and of the HAR baseline the head carries (live skill = 1 - MSE ratio);
- at the label horizon: did the trade in the served direction reach TP or SL first (a bar that
  touches both counts as SL, as in training and the backtester), binned by the served confidence.

**The recorded predictions, not the wall clock, say which bars have closed.** The engine predicts
on closed bars only, so the newest `bar_time` recorded for a (symbol, timeframe) is its newest
closed bar. A key is read only when such a bar closed since its last read and the first horizon
in line (per horizon length, the oldest waiting prediction's) ends at or before it, an
O(horizons) check per key and pass; the read covers the bars after those read before, through
that bar. Deciding by the wall clock instead read every key on every pass when bar times are
historical (replays, benchmarks), and could take a resampled bucket still forming (15m, 1h from
5m bars) for a closed one and freeze its high and low.

Outcomes are counted once across replicas in Redis (store.py) into totals that make the
report, the gauges and the drift warnings (totals.py).

**Gap:** pending predictions (not yet resolved) stay in each replica's memory. After a restart the
engine delivers the newest bar of every key again, but older predictions whose horizons are still
open (up to 5 days of them) are not re-collected: the only prediction store, the shared cache, keeps
3 bars per key, and the tracker resolves from the bar store, which holds no predictions. Another
replica that keeps running counts them; a lone replica does not (an undercount, never a double
count). Persisting them would take ~300 B per open prediction (~200 per symbol over three
timeframes).
"""

from __future__ import annotations

import asyncio
import bisect
import logging
from array import array
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
from redis.asyncio import Redis

from orchestrator.features.head import OnlineLevels
from orchestrator.features.spec import FeatureSpec
from orchestrator.inference.prediction import FeatureKey, Prediction
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.quality.adaptive import column_miscoverage, probability_shifts, universe_rate
from orchestrator.quality.store import CLAIM_TTL_S, SharedTotals
from orchestrator.quality.totals import (
    Drift,
    Group,
    Outcome,
    Pending,
    VersionQuality,
    pending,
    publish,
    score_range,
    score_trade,
    version_quality,
)

__all__ = ["QualityTracker", "VersionQuality"]

log = logging.getLogger("orchestrator.quality")

PENDING_PER_KEY = 3000  # predictions kept per (symbol, timeframe) while their horizons run
RESOLVE_INTERVAL_S = 15.0
_TIMEFRAMES = {timeframe.value: timeframe for timeframe in Timeframe}  # no enum call per prediction


def _epoch(moment: datetime) -> int:
    """Seconds since the epoch of an aware time (a naive one is UTC, as the store's are)."""
    return int(moment.replace(tzinfo=moment.tzinfo or UTC).timestamp())


def _bar_time(item: Pending) -> datetime:
    return item.bar_time


@dataclass
class _Series:
    """One (symbol, timeframe): its open predictions and the bars read for them. Served
    timeframes sit on the fixed epoch grid, so bar `n` after `t` opens at `t + n * step`."""

    step: timedelta
    # Open predictions by (bar time, version), oldest recorded first.
    pending: dict[tuple[datetime, str], Pending] = field(default_factory=dict)
    # Per horizon length (bars), the predictions waiting for it in bar-time order: the first one
    # is the first due.
    waiting: dict[int, list[Pending]] = field(default_factory=dict)
    newest: datetime | None = None  # newest closed bar a prediction was recorded for
    read_for: datetime | None = None  # `newest` as of the last read
    # Every bar opening after `floor`, through `through`, as read so far.
    floor: datetime | None = None
    through: datetime | None = None
    # Bar open times (epoch seconds), highs and lows as arrays: a 5m key holds up to 1,440 bars
    # for its 5-day horizon, ~35 KB as arrays where lists of datetimes and floats took ~170 KB.
    times: array[int] = field(default_factory=lambda: array("q"))
    highs: array[float] = field(default_factory=lambda: array("d"))
    lows: array[float] = field(default_factory=lambda: array("d"))

    def add(self, item: Pending) -> None:
        if self.floor is not None and item.bar_time < self.floor:
            self._forget_bars()  # bars it needs were dropped already: read them again
        if self.newest is not None and item.bar_time + min(item.horizon_bars) * self.step <= (
            self.newest
        ):
            self.read_for = None  # due already (it arrived late): read even if no bar closed
        self.pending[(item.bar_time, item.version)] = item
        for bars in {item.horizon_bars[k] for k in item.tracked}:
            bisect.insort_right(self.waiting.setdefault(bars, []), item, key=_bar_time)
        if len(self.pending) > PENDING_PER_KEY:
            del self.pending[next(iter(self.pending))]  # still queued: skipped once due

    def is_open(self, item: Pending) -> bool:
        return self.pending.get((item.bar_time, item.version)) is item

    def due(self) -> bool:
        """Whether reading may settle something: a bar closed since the last read, and the
        first horizon in line ends at or before it."""
        newest = self.newest
        if newest is None or newest == self.read_for:
            return False
        return any(
            q and q[0].bar_time + bars * self.step <= newest for bars, q in self.waiting.items()
        )

    def oldest(self) -> datetime | None:
        """Bar time of the oldest prediction waiting: no older bar is needed any more."""
        return min((q[0].bar_time for q in self.waiting.values() if q), default=None)

    def read_from(self) -> datetime | None:
        """The next read starts after this bar (after the oldest waiting prediction's, at first)."""
        if self.through is None:
            self.floor = self.through = self.oldest()
        return self.through

    def extend(self, frame: pd.DataFrame) -> None:
        if frame.empty:
            return
        index = pd.DatetimeIndex(frame.index)
        self.times.extend(index.as_unit("s").asi8.tolist())
        self.highs.extend(frame["high"].to_numpy(np.float64).tolist())
        self.lows.extend(frame["low"].to_numpy(np.float64).tolist())
        self.through = index[-1].to_pydatetime()

    def trim(self) -> None:
        """Drops the bars no waiting prediction needs (all of them when none waits)."""
        oldest = self.oldest()
        cut = self.through if oldest is None else oldest
        if cut is None or self.through is None or self.floor is None or cut <= self.floor:
            return
        n = bisect.bisect_right(self.times, _epoch(cut))
        del self.times[:n], self.highs[:n], self.lows[:n]
        self.floor, self.through = cut, max(self.through, cut)

    def _forget_bars(self) -> None:
        self.times, self.highs, self.lows = array("q"), array("d"), array("d")
        self.floor = self.through = self.read_for = None


class QualityTracker:
    """Fed by the bar-close engine's listener; resolved by `run()` against the store; counted
    once across replicas in Redis (`redis`), or in memory without it."""

    def __init__(
        self,
        redis: Redis | None = None,
        *,
        namespace: str = "tme",
        interval_s: float = RESOLVE_INTERVAL_S,
        claim_ttl_s: float = CLAIM_TTL_S,
    ) -> None:
        self.interval_s = interval_s
        self.shared = SharedTotals(redis, namespace=namespace, claim_ttl_s=claim_ttl_s)
        self._series: dict[FeatureKey, _Series] = {}
        self._levels: dict[Group, float | None] = {}
        self._horizons: dict[Group, list[str]] = {}
        self._warned: set[str] = set()
        self.fetches = 0  # bar reads from the store
        # Called with each pass's new drift warnings (the API queues retrains with it).
        self.on_drift: Callable[[list[Drift]], Awaitable[object]] | None = None

    # --- intake ---------------------------------------------------------------------------
    def record(self, predictions: list[Prediction]) -> None:
        for prediction in predictions:
            key = (prediction.symbol, _TIMEFRAMES[prediction.timeframe])
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series(timedelta(seconds=key[1].seconds))
            if series.newest is None or prediction.bar_time > series.newest:
                series.newest = prediction.bar_time  # predictions are made on closed bars only
            if (prediction.bar_time, prediction.version) in series.pending:
                continue  # the same bar again (another replica, a request): counted once
            bar_number = int(prediction.bar_time.timestamp()) // key[1].seconds
            item = pending(prediction, bar_number)
            if item is None:
                continue  # no horizon scores this bar (totals.strides)
            series.add(item)
            group = (prediction.timeframe, prediction.version)
            if group not in self._horizons:
                spec = prediction.spec
                self._horizons[group] = list(spec.horizons)
                self._levels[group] = None if spec.head is None else spec.head.interval_level

    # --- resolution -----------------------------------------------------------------------
    async def run(self, database: Callable[[], Awaitable[Database]]) -> None:
        """Resolves what is due every interval_s, until cancelled; a failing pass (the database
        away) is logged and retried: quality tracking never stops serving."""
        await self.refresh()  # what the other replicas (or this one before a restart) counted
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.resolve(BarStore(await database()))
            except Exception:
                log.exception("quality pass failed; retrying in %.0f s", self.interval_s)

    async def refresh(self) -> None:
        await self.shared.refresh()

    async def resolve(self, store: BarStore, now: datetime | None = None) -> int:
        """One pass: read the bars that closed where something is due, resolve what they settle,
        count it and read the shared totals back. `now` (the wall clock) only stamps when each
        outcome was resolved. Returns the number of horizon outcomes this replica resolved
        (counted here or, first, by another replica)."""
        moment = now or datetime.now(UTC)
        outcomes: list[Outcome] = []
        failure: Exception | None = None
        for key, series in list(self._series.items()):
            if not series.due():
                continue
            try:
                await self._read(store, key, series)
            except Exception as exc:  # the database away: count what has settled, then raise
                failure = exc
                break
            outcomes += self._settle(key, series, moment)
            series.trim()
        await self.shared.count(outcomes, moment)
        await self.shared.refresh()
        drifts = publish(self.report(), self._warned)
        if drifts and self.on_drift is not None:
            try:
                await self.on_drift(drifts)
            except Exception:  # a retrain not queued must not stop quality tracking
                log.exception("drift warnings not acted on")
        if failure is not None:
            raise failure
        return len(outcomes)

    async def _read(self, store: BarStore, key: FeatureKey, series: _Series) -> None:
        """Reads the bars after those read so far, through the newest closed bar recorded and
        never past it: a resampled bucket still forming is never taken for a closed one."""
        newest, after = series.newest, series.read_from()
        if newest is None or after is None or after >= newest:
            series.read_for = newest
            return
        self.fetches += 1
        frame = await store.bars_between(key[0], key[1], after + series.step, newest + series.step)
        if series.through == after:  # not reset by a late prediction recorded meanwhile
            series.extend(frame)
            series.read_for = newest

    def _settle(self, key: FeatureKey, series: _Series, now: datetime) -> list[Outcome]:
        times = series.times
        outcomes = []
        for bars, queue in series.waiting.items():
            done = 0
            for item in queue:
                first = bisect.bisect_right(times, _epoch(item.bar_time))
                if len(times) - first < bars:
                    break  # the predictions after it in line need later bars still
                done += 1
                if series.is_open(item):
                    outcomes += self._outcomes(key, series, item, bars, first, now)
            del queue[:done]
        return outcomes

    def _outcomes(
        self, key: FeatureKey, series: _Series, item: Pending, bars: int, first: int, now: datetime
    ) -> list[Outcome]:
        """The horizons of `item` that span `bars` bars, from the bar after its own."""
        high = np.asarray(series.highs[first : first + bars])
        low = np.asarray(series.lows[first : first + bars])
        group = (key[1].value, item.version)
        names = self._horizons[group]
        outcomes = []
        for k in item.tracked:
            if item.horizon_bars[k] != bars:
                continue
            increments, drift = score_range(names[k], item, k, high, low)
            if k == item.label:
                increments += score_trade(item, high, low)
            item.unresolved -= 1
            outcomes.append(
                Outcome(
                    timeframe=group[0],
                    version=item.version,
                    horizon=names[k],
                    claim=_claim_name(key, item, names[k]),
                    resolved_at=now,
                    level=self._levels[group],
                    horizons=names,
                    increments=increments,
                    drift=drift,
                )
            )
        if item.unresolved == 0:
            del series.pending[(item.bar_time, item.version)]
        return outcomes

    # --- online levels ---------------------------------------------------------------------
    def levels(
        self, timeframe: str, version: str, spec: FeatureSpec, served_series: int
    ) -> OnlineLevels | None:
        """The adaptive interval level per column and the probability shifts of (timeframe,
        version), from the totals of the last pass (shared by every replica), with steps scaled
        to the `served_series` of the timeframe; None where the head adapts neither."""
        head = spec.head
        if head is None:
            return None
        adapts_intervals = head.adaptive_rate > 0 and bool(head.interval_quantiles)
        if not adapts_intervals and head.probability_rate <= 0:
            return None
        totals = self.shared.totals().get((timeframe, version))
        sums = {} if totals is None else totals.sums
        miscoverage = shift = None
        if adapts_intervals:
            rate = universe_rate(head.adaptive_rate, head.rate_symbols, served_series)
            miscoverage = column_miscoverage(1 - head.interval_level, rate, spec.horizons, sums)
        if head.probability_rate > 0:
            rate = universe_rate(head.probability_rate, head.rate_symbols, served_series)
            shift = probability_shifts(rate, sums)
        return OnlineLevels(miscoverage, shift)

    # --- reporting ------------------------------------------------------------------------
    def report(self) -> list[VersionQuality]:
        """The totals as of the last pass (shared, plus this replica's own while Redis is away)."""
        source = self.shared.source
        totals = self.shared.totals()
        return [version_quality(group, totals[group], source) for group in sorted(totals)]


def _claim_name(key: FeatureKey, item: Pending, horizon: str) -> str:
    stamp = int(item.bar_time.replace(tzinfo=item.bar_time.tzinfo or UTC).timestamp())
    return f"{key[0]}:{key[1].value}:{stamp}:v{item.version}:{horizon}"
