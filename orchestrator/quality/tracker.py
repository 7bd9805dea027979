"""Live model quality: what was served, compared with what happened once each horizon elapsed.

The predictions the bar-close engine holds (computed here or received from another replica) are
recorded as they are made; at each horizon every s-th bar's prediction is scored and counted s
times (totals.strides: about 24 open per horizon and key, where every bar's would be up to 1,440
at a 5m key's 5-day horizon). An open prediction is a row of numbers (open_rows.py) into which
each bar read after it is folded: the highest high and lowest low so far, and at the label
horizon whether each side's take-profit or stop came first. The bars are not kept. A background
pass reads the bars that closed since a key's last read where a row can have ended (one query
for up to READ_CHUNK such series of a timeframe), folds them in and counts the rows whose
horizon ended:
- per horizon: was the realised high / low inside its 80 % interval, and the squared error of the
  served range and of the HAR baseline the head carries (live skill = 1 - MSE ratio);
- at the label horizon: did the trade in the served direction reach TP or SL first (a bar that
  touches both counts as SL, as in training and the backtester), binned by the served confidence.

**The recorded predictions, not the wall clock, say which bars have closed.** The engine predicts
on closed bars only, so the newest `bar_time` recorded for a (symbol, timeframe) is its newest
closed bar. A key is read only when such a bar closed since its last read and some row can have
ended by it (its horizon's bars counted on the timeframe's grid from the last bar it saw); the
read covers the bars after those every row has seen, through that bar. Deciding by the wall clock
instead read every key on every pass when bar times are historical (replays, benchmarks), and
could take a resampled bucket still forming (15m, 1h from 5m bars) for a closed one and freeze
its high and low.

Outcomes are counted once across replicas in Redis (store.py) into totals that make the
report, the gauges and the drift warnings (totals.py).

**Gap:** open predictions stay in each replica's memory. After a restart the engine delivers the
newest bar of every key again, but older predictions whose horizons are still open (up to 5 days
of them) are not re-collected: the only prediction store, the shared cache, keeps 3 bars per key,
and the tracker resolves from the bar store, which holds no predictions. Another replica that
keeps running counts them; a lone replica does not (an undercount, never a double count).
Persisting them would take their rows (~150 B each, ~80 per 5m key).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import numpy as np
from redis.asyncio import Redis

from orchestrator.dates import epoch_seconds
from orchestrator.features.head import OnlineLevels
from orchestrator.features.spec import FeatureSpec
from orchestrator.inference.prediction import FeatureKey, Prediction
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import Timeframe
from orchestrator.quality.adaptive import column_miscoverage, probability_shifts, universe_rate
from orchestrator.quality.open_rows import (
    F64,
    Horizon,
    OpenRows,
    ReadBars,
    Resolved,
    fold_blocks,
    served_rows,
)
from orchestrator.quality.store import CLAIM_TTL_S, SharedTotals
from orchestrator.quality.totals import (
    Drift,
    Group,
    Outcome,
    VersionQuality,
    publish,
    resolved_increments,
    strides,
    tracked_horizons,
    version_quality,
)

__all__ = ["QualityTracker", "VersionQuality"]

log = logging.getLogger("orchestrator.quality")

RESOLVE_INTERVAL_S = 15.0
READ_CHUNK = 1_000  # series whose new bars are read in one query
HIGH, LOW = 1, 2  # columns of the bars read (open, high, low, close, volume)
_TIMEFRAMES = {timeframe.value: timeframe for timeframe in Timeframe}  # no enum call per prediction
_BlockKey = tuple[str, int, int, bool, bool]  # version, horizon, its bars, intervals?, baseline?
# Predictions whose rows are built together: timeframe, version, horizon bars, intervals?, baseline?
_Group = tuple[str, str, tuple[int, ...], bool, bool]


@dataclass
class _Series:
    """One (symbol, timeframe): its open predictions, a block of rows per horizon and version.
    Served timeframes sit on the fixed epoch grid, so bar `n` after `t` opens at `t + n * step`."""

    step_s: int
    blocks: dict[_BlockKey, OpenRows] = field(default_factory=dict)
    version: str = ""  # of the newest prediction recorded: its blocks stay when empty
    newest: int | None = None  # newest closed bar a prediction was recorded for (epoch s)
    read_for: int | None = None  # `newest` as of the last read
    due_at: int | None = None  # the earliest bar by which a row can have ended

    def add(self, key: _BlockKey, horizon: Horizon, epoch: int, row: F64) -> None:
        block = self.blocks.get(key)
        if block is None:
            block = self.blocks[key] = OpenRows(horizon, self.step_s)
        block.add(epoch, row)
        ends = epoch + horizon.bars * self.step_s
        if self.due_at is None or ends < self.due_at:
            self.due_at = ends
        if self.newest is not None and ends <= self.newest:
            self.read_for = None  # due already (it arrived late): read even if no bar closed

    def due(self) -> bool:
        """Whether reading may end a row: a bar closed since the last read, and a row can have
        ended by it."""
        newest = self.newest
        if newest is None or newest == self.read_for:
            return False
        return self.due_at is not None and self.due_at <= newest

    def read_after(self) -> int | None:
        """The newest bar every row has folded: the next read starts after it."""
        return min(
            (s for b in self.blocks.values() if (s := b.oldest_seen()) is not None), default=None
        )

    def settle(self, after: int) -> None:
        """After its blocks were folded with bars read after `after`: reads again where rows were
        recorded during the read for older bars, drops the empty blocks of a version no longer
        served, and finds when a row can next end."""
        behind = self.read_after()
        if behind is not None and behind < after:
            self.read_for = None  # rows recorded during the read, for older bars: read again
        for key in [k for k, b in self.blocks.items() if not b.n and k[0] != self.version]:
            del self.blocks[key]  # a version no longer served
        self.due_at = min(
            (d for b in self.blocks.values() if (d := b.due_at()) is not None), default=None
        )


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
        self._blocks: dict[_Group, list[Horizon]] = {}
        self._warned: set[str] = set()
        self.fetches = 0  # bar reads from the store (one query per chunk of due series)
        # Called with each pass's new drift warnings (the API queues retrains with it).
        self.on_drift: Callable[[list[Drift]], Awaitable[object]] | None = None

    def open_rows(self, key: FeatureKey) -> int:
        """Open (prediction, horizon) rows of a series."""
        series = self._series.get(key)
        return 0 if series is None else sum(b.n for b in series.blocks.values())

    # --- intake ---------------------------------------------------------------------------
    def record(self, predictions: list[Prediction]) -> None:
        """Adds the rows of the horizons that score each prediction's bar (totals.strides),
        unless held already (the same bar again from another replica or a request is counted
        once). The rows of predictions served alike are built together (`served_rows`)."""
        bar_time, epoch = None, 0  # a sweep's predictions share their bar time
        groups: dict[_Group, list[tuple[_Series, Prediction, int, tuple[int, ...]]]] = {}
        for prediction in predictions:
            key = (prediction.symbol, _TIMEFRAMES[prediction.timeframe])
            series = self._series.get(key)
            if series is None:
                series = self._series[key] = _Series(key[1].seconds)
            if prediction.bar_time != bar_time:
                bar_time = prediction.bar_time
                epoch = epoch_seconds(bar_time)
            if series.newest is None or epoch > series.newest:
                series.newest = epoch  # predictions are made on closed bars only
                series.version = prediction.version
            bars = tuple(prediction.horizon_bars)
            tracked = tracked_horizons(strides(bars), epoch // series.step_s)
            if tracked:
                served = prediction.served
                group = (
                    prediction.timeframe,
                    prediction.version,
                    bars,
                    served.intervals is not None,
                    served.baseline is not None,
                )
                groups.setdefault(group, []).append((series, prediction, epoch, tracked))
        for group, members in groups.items():
            self._add(group, members)

    def _add(
        self, group: _Group, members: list[tuple[_Series, Prediction, int, tuple[int, ...]]]
    ) -> None:
        timeframe, version, bars, has_intervals, has_baseline = group
        spec = members[0][1].spec
        if (timeframe, version) not in self._horizons:
            self._horizons[timeframe, version] = list(spec.horizons)
            self._levels[timeframe, version] = (
                None if spec.head is None else spec.head.interval_level
            )
        horizons = self._horizons_of(group, spec)
        keys = [(version, k, bars[k], has_intervals, has_baseline) for k in range(len(bars))]
        predictions = [prediction for _, prediction, _, _ in members]
        served = [prediction.served for prediction in predictions]
        rows = served_rows(
            close=np.array([prediction.inputs.close for prediction in predictions]),
            atr=np.array([prediction.inputs.atr for prediction in predictions]),
            ranges=np.concatenate([s.ranges for s in served]),
            intervals=np.concatenate([s.intervals for s in served if s.intervals is not None])
            if has_intervals
            else None,
            baseline=np.concatenate([s.baseline for s in served if s.baseline is not None])
            if has_baseline
            else None,
            direction=np.concatenate([prediction.out.direction for prediction in predictions]),
            confidence=np.concatenate([s.confidence for s in served]),
            p_long=np.concatenate([s.p_long for s in served]),
            p_short=np.concatenate([s.p_short for s in served]),
        )
        for i, (series, _, epoch, tracked) in enumerate(members):
            longest = series.blocks.get(keys[tracked[-1]])
            if longest is not None and longest.holds(epoch):
                continue
            for k in tracked:
                series.add(keys[k], horizons[k], epoch, rows[i, k])

    def _horizons_of(self, group: _Group, spec: FeatureSpec) -> list[Horizon]:
        """What the rows of each horizon's block share (built once per group)."""
        found = self._blocks.get(group)
        if found is None:
            _, version, bars, has_intervals, has_baseline = group
            weights = strides(bars)
            label = spec.horizons.index(spec.label_horizon)
            found = self._blocks[group] = [
                Horizon(
                    version=version,
                    position=k,
                    name=spec.horizons[k],
                    bars=bars[k],
                    weight=weights[k],
                    is_label=k == label,
                    tp_atr=spec.tp_atr,
                    sl_atr=spec.sl_atr,
                    has_intervals=has_intervals,
                    has_baseline=has_baseline,
                )
                for k in range(len(bars))
            ]
        return found

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
        """One pass: read the bars that closed where a row can have ended, fold them in, count
        what ended and read the shared totals back. `now` (the wall clock) only stamps when each
        outcome was resolved. Returns the number of horizon outcomes this replica resolved
        (counted here or, first, by another replica)."""
        moment = now or datetime.now(UTC)
        outcomes: list[Outcome] = []
        failure: Exception | None = None
        due: dict[Timeframe, list[tuple[FeatureKey, _Series]]] = {}
        for key, series in list(self._series.items()):
            if series.due():
                due.setdefault(key[1], []).append((key, series))
        chunks = [
            (timeframe, keys[i : i + READ_CHUNK])
            for timeframe, keys in due.items()
            for i in range(0, len(keys), READ_CHUNK)
        ]
        for timeframe, chunk in chunks:
            try:
                ended = await self._read(store, timeframe, chunk)
            except Exception as exc:  # the database away: count what has settled, then raise
                failure = exc
                break
            outcomes += self._outcomes(ended, moment)
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

    async def _read(
        self, store: BarStore, timeframe: Timeframe, chunk: list[tuple[FeatureKey, _Series]]
    ) -> list[tuple[FeatureKey, Resolved]]:
        """Reads, for each series of the chunk, the bars after those every row has seen through
        the newest closed bar recorded and never past it (a resampled bucket still forming is
        never taken for a closed one), all in one query; folds them in."""
        step = timedelta(seconds=timeframe.seconds)
        spans: dict[str, tuple[datetime, datetime]] = {}
        reads: list[tuple[FeatureKey, _Series, int, int]] = []
        for key, series in chunk:
            newest, after = series.newest, series.read_after()
            if newest is None or after is None or after >= newest:
                series.read_for = newest
                continue
            spans[key[0]] = (_moment(after) + step, _moment(newest) + step)
            reads.append((key, series, after, newest))
        if not reads:
            return []
        self.fetches += 1
        found = await store.bars_between_many(timeframe, spans)
        read = [(key, series, after) for key, series, after, _ in reads if len(found[key[0]].times)]
        for _, series, _, newest in reads:
            series.read_for = newest
        if not read:
            return []
        bars = ReadBars.padded(
            [
                (b.times, b.values[:, HIGH], b.values[:, LOW])
                for b in (found[k[0]] for k, _, _ in read)
            ]
        )
        afters = np.array([after for _, _, after in read], np.int64)
        # The blocks of one horizon across the chunk are folded together.
        groups: dict[_BlockKey, tuple[list[OpenRows], list[int]]] = {}
        for i, (_, series, _) in enumerate(read):
            for block_key, block in series.blocks.items():
                blocks, owners = groups.setdefault(block_key, ([], []))
                blocks.append(block)
                owners.append(i)
        done: dict[tuple[int, _BlockKey], Resolved] = {}
        for block_key, (blocks, owners) in groups.items():
            resolved = fold_blocks(blocks, np.array(owners, np.intp), bars, afters)
            done.update({(i, block_key): r for i, r in zip(owners, resolved, strict=True) if r})
        ended: list[tuple[FeatureKey, Resolved]] = []  # in series order, as they were read
        for i, (key, series, after) in enumerate(read):
            ended += [(key, r) for k in series.blocks if (r := done.get((i, k)))]
            series.settle(after)
        return ended

    def _outcomes(self, ended: list[tuple[FeatureKey, Resolved]], now: datetime) -> list[Outcome]:
        """The outcomes of a chunk's ended rows, scored a horizon at a time over every series
        (resolved_increments' array work once per horizon, not once per series), each
        horizon's in the order the series were read."""
        by_horizon: dict[tuple[str, Horizon], list[tuple[FeatureKey, Resolved]]] = {}
        for key, rows in ended:
            by_horizon.setdefault((key[1].value, rows.horizon), []).append((key, rows))
        outcomes: list[Outcome] = []
        for (timeframe, horizon), parts in by_horizon.items():
            group = (timeframe, horizon.version)
            names, level = self._horizons[group], self._levels[group]
            rows = Resolved(
                horizon,
                np.concatenate([r.epochs for _, r in parts]),
                np.concatenate([r.values for _, r in parts]),
            )
            symbols = [key[0] for key, r in parts for _ in range(len(r.epochs))]
            suffix = f":{timeframe}:"
            tail = f":v{horizon.version}:{horizon.name}"
            outcomes += [
                Outcome(
                    timeframe=timeframe,
                    version=horizon.version,
                    horizon=horizon.name,
                    claim=f"{symbol}{suffix}{epoch}{tail}",
                    resolved_at=now,
                    level=level,
                    horizons=names,
                    increments=increments,
                    drift=drift,
                )
                for symbol, epoch, (increments, drift) in zip(
                    symbols, rows.epochs.tolist(), resolved_increments(rows), strict=True
                )
            ]
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


def _moment(epoch: int) -> datetime:
    return datetime.fromtimestamp(epoch, UTC)
