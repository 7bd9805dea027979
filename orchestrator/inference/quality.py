"""Live model quality: what was served, compared with what happened once each horizon elapsed.

Every prediction the bar-close engine holds (computed here or received from another replica) is
kept until its longest horizon has passed. A background pass reads the bars that closed since the
last pass (one small query per symbol) and resolves what is due:
- per horizon: was the realised high / low inside its 80 % interval, and the squared error of the
  served range and of the HAR baseline the head carries (live skill = 1 - MSE ratio);
- at the label horizon: did the trade in the served direction reach TP or SL first (a bar that
  touches both counts as SL, as in training and the backtester), binned by the served confidence.

Totals are kept per (timeframe, model version) in memory: a restart starts counting again (the
model card holds the out-of-sample numbers; these say whether they still hold). A drift warning
is raised while the coverage of the last `DRIFT_WINDOW` resolved intervals of a horizon leaves
the nominal level by more than the larger of 3 points and two binomial standard errors.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import msgspec
import numpy as np
import numpy.typing as npt
import pandas as pd
from prometheus_client import Gauge

from orchestrator.inference.prediction import FeatureKey, Prediction
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import Timeframe

log = logging.getLogger("orchestrator.quality")

F64 = npt.NDArray[np.float64]
PENDING_PER_KEY = 3000  # predictions kept per (symbol, timeframe) while their horizons run
DRIFT_WINDOW = 500
COVERAGE_BAND = 0.03
CONFIDENCE_BINS = 10
RESOLVE_INTERVAL_S = 15.0

LIVE_COVERAGE = Gauge(
    "ml_engine_live_interval_coverage",
    "Share of realised highs/lows inside the served interval (since start)",
    ["timeframe", "version", "horizon", "side"],
    multiprocess_mode="livemax",
)
LIVE_SKILL = Gauge(
    "ml_engine_live_skill",
    "1 - MSE(served range) / MSE(HAR baseline), live",
    ["timeframe", "version", "horizon"],
    multiprocess_mode="livemax",
)
LIVE_ECE = Gauge(
    "ml_engine_live_confidence_ece",
    "Expected calibration error of the served confidence on resolved trades",
    ["timeframe", "version"],
    multiprocess_mode="livemax",
)
LIVE_RESOLVED = Gauge(
    "ml_engine_live_resolved",
    "Predictions resolved against realised bars",
    ["timeframe", "version", "horizon"],
    multiprocess_mode="livemax",
)


@dataclass
class _Pending:
    bar_time: datetime
    version: str
    close: float
    atr: float
    horizon_bars: list[int]
    ranges: F64  # (2H,) served
    intervals: F64 | None  # (2H, 2)
    baseline: F64 | None  # (2H,) HAR baseline
    direction: float
    confidence: float
    tp_atr: float
    sl_atr: float
    label: int  # index of the label horizon
    resolved: set[int] = field(default_factory=set)
    trade_done: bool = False


@dataclass
class _HorizonTotals:
    resolved: int = 0
    inside_high: int = 0
    inside_low: int = 0
    intervals: int = 0
    sse_served: float = 0.0
    sse_baseline: float = 0.0
    baseline_rows: int = 0
    recent: deque[tuple[bool, bool]] = field(default_factory=lambda: deque(maxlen=DRIFT_WINDOW))


@dataclass
class _VersionTotals:
    horizons: dict[str, _HorizonTotals] = field(default_factory=dict)
    trades: int = 0
    wins: int = 0
    bin_count: list[int] = field(default_factory=lambda: [0] * CONFIDENCE_BINS)
    bin_confidence: list[float] = field(default_factory=lambda: [0.0] * CONFIDENCE_BINS)
    bin_wins: list[int] = field(default_factory=lambda: [0] * CONFIDENCE_BINS)


class HorizonQuality(msgspec.Struct):
    horizon: str
    resolved: int
    coverage_high: float | None  # since start
    coverage_low: float | None
    recent_coverage: float | None  # the last DRIFT_WINDOW intervals, both sides
    mse_served: float | None  # ATR² units
    mse_baseline: float | None
    skill: float | None  # 1 - mse_served / mse_baseline


class ConfidenceBin(msgspec.Struct):
    bin: str
    trades: int
    mean_confidence: float
    win_rate: float


class VersionQuality(msgspec.Struct):
    timeframe: str
    model_version: str
    interval_level: float | None
    horizons: list[HorizonQuality]
    trades: int  # resolved TP/SL outcomes at the label horizon
    win_rate: float | None
    mean_confidence: float | None
    confidence_ece: float | None
    reliability: list[ConfidenceBin]
    warnings: list[str]


class QualityTracker:
    """Fed by the bar-close engine's listener; resolved by `run()` against the store."""

    def __init__(self, interval_s: float = RESOLVE_INTERVAL_S) -> None:
        self.interval_s = interval_s
        self._pending: dict[FeatureKey, deque[_Pending]] = {}
        self._seen: dict[FeatureKey, set[tuple[datetime, str]]] = {}
        self._bars: dict[FeatureKey, tuple[list[datetime], list[float], list[float]]] = {}
        self._totals: dict[tuple[str, str], _VersionTotals] = {}
        self._levels: dict[tuple[str, str], float | None] = {}
        self._horizons: dict[tuple[str, str], list[str]] = {}
        self._warned: set[str] = set()

    # --- intake ---------------------------------------------------------------------------
    def record(self, predictions: list[Prediction]) -> None:
        for prediction in predictions:
            key = (prediction.symbol, Timeframe(prediction.timeframe))
            seen = self._seen.setdefault(key, set())
            token = (prediction.bar_time, prediction.version)
            if token in seen:
                continue
            seen.add(token)
            served, spec = prediction.served, prediction.spec
            pending = self._pending.setdefault(key, deque(maxlen=PENDING_PER_KEY))
            if len(pending) == pending.maxlen:
                seen.discard((pending[0].bar_time, pending[0].version))
            pending.append(
                _Pending(
                    bar_time=prediction.bar_time,
                    version=prediction.version,
                    close=prediction.inputs.close,
                    atr=prediction.inputs.atr,
                    horizon_bars=list(spec.horizon_bars),
                    ranges=served.ranges[0],
                    intervals=None if served.intervals is None else served.intervals[0],
                    baseline=None if served.baseline is None else served.baseline[0],
                    direction=float(prediction.out.direction[0]),
                    confidence=float(served.confidence[0]),
                    tp_atr=spec.tp_atr,
                    sl_atr=spec.sl_atr,
                    label=spec.horizons.index(spec.label_horizon),
                )
            )
            group = (prediction.timeframe, prediction.version)
            self._horizons.setdefault(group, list(spec.horizons))
            self._levels.setdefault(group, None if spec.head is None else spec.head.interval_level)

    # --- resolution -----------------------------------------------------------------------
    async def run(self, database: Callable[[], Awaitable[Database]]) -> None:
        """Resolves what is due every interval_s, until cancelled; a failing pass (the database
        away) is logged and retried: quality tracking never stops serving."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.resolve(BarStore(await database()))
            except Exception:
                log.exception("quality pass failed; retrying in %.0f s", self.interval_s)

    async def resolve(self, store: BarStore, now: datetime | None = None) -> int:
        """One pass: fetch the bars that closed since the last pass, resolve what they settle.
        Returns the number of horizon outcomes resolved."""
        moment = now or datetime.now(UTC)
        done = 0
        for key, pending in list(self._pending.items()):
            if not pending:
                continue
            await self._fetch(store, key, pending[0].bar_time, moment)
            done += self._settle(key, pending)
        if done:
            self._publish()
        return done

    async def _fetch(
        self, store: BarStore, key: FeatureKey, oldest: datetime, now: datetime
    ) -> None:
        times, highs, lows = self._bars.setdefault(key, ([], [], []))
        step = timedelta(seconds=key[1].seconds)
        start = times[-1] + step if times else oldest + step
        closed_before = now - step  # a bar is closed once its whole period has passed
        if start > closed_before:
            return
        frame = await store.bars_between(key[0], key[1], start, closed_before + step)
        if frame.empty:
            return
        index = pd.DatetimeIndex(frame.index).to_pydatetime().tolist()
        keep = [i for i, t in enumerate(index) if t <= closed_before]
        times.extend(index[i] for i in keep)
        highs.extend(frame["high"].to_numpy(np.float64)[keep].tolist())
        lows.extend(frame["low"].to_numpy(np.float64)[keep].tolist())
        # Bars older than every pending prediction are never read again.
        cut = bisect.bisect_right(times, oldest)
        if cut > 0:
            del times[:cut], highs[:cut], lows[:cut]

    def _settle(self, key: FeatureKey, pending: deque[_Pending]) -> int:
        times, highs, lows = self._bars.get(key, ([], [], []))
        done = 0
        for item in list(pending):
            first = bisect.bisect_right(times, item.bar_time)
            available = len(times) - first
            totals = self._totals.setdefault((key[1].value, item.version), _VersionTotals())
            names = self._horizons[(key[1].value, item.version)]
            for k, bars in enumerate(item.horizon_bars):
                if k in item.resolved or available < bars:
                    continue
                high = np.asarray(highs[first : first + bars])
                low = np.asarray(lows[first : first + bars])
                self._score_range(totals, names[k], item, k, high, low)
                item.resolved.add(k)
                done += 1
                if k == item.label and not item.trade_done:
                    self._score_trade(totals, item, high, low)
                    item.trade_done = True
            if len(item.resolved) == len(item.horizon_bars):
                pending.remove(item)
                self._seen.get(key, set()).discard((item.bar_time, item.version))
        return done

    @staticmethod
    def _score_range(
        totals: _VersionTotals, name: str, item: _Pending, k: int, high: F64, low: F64
    ) -> None:
        entry = totals.horizons.setdefault(name, _HorizonTotals())
        realised = np.array(
            [(high.max() - item.close) / item.atr, (item.close - low.min()) / item.atr]
        )
        predicted = item.ranges[2 * k : 2 * k + 2]
        entry.resolved += 1
        entry.sse_served += float(((predicted - realised) ** 2).sum())
        if item.baseline is not None:
            entry.sse_baseline += float(((item.baseline[2 * k : 2 * k + 2] - realised) ** 2).sum())
            entry.baseline_rows += 1
        if item.intervals is not None:
            bounds = item.intervals[2 * k : 2 * k + 2]
            inside = (realised >= bounds[:, 0]) & (realised <= bounds[:, 1])
            entry.intervals += 1
            entry.inside_high += int(inside[0])
            entry.inside_low += int(inside[1])
            entry.recent.append((bool(inside[0]), bool(inside[1])))

    @staticmethod
    def _score_trade(totals: _VersionTotals, item: _Pending, high: F64, low: F64) -> None:
        d = item.direction
        take = item.close + d * item.tp_atr * item.atr
        stop = item.close - d * item.sl_atr * item.atr
        stopped = low <= stop if d > 0 else high >= stop
        profited = high >= take if d > 0 else low <= take
        first_stop = int(np.argmax(stopped)) if stopped.any() else len(high)
        first_take = int(np.argmax(profited)) if profited.any() else len(high)
        won = first_take < first_stop  # same bar: the stop counts first
        b = min(int(item.confidence * CONFIDENCE_BINS), CONFIDENCE_BINS - 1)
        totals.trades += 1
        totals.wins += int(won)
        totals.bin_count[b] += 1
        totals.bin_confidence[b] += item.confidence
        totals.bin_wins[b] += int(won)

    # --- reporting ------------------------------------------------------------------------
    def report(self) -> list[VersionQuality]:
        out = []
        for (timeframe, version), totals in sorted(self._totals.items()):
            level = self._levels.get((timeframe, version))
            horizons = [
                _horizon_quality(name, totals.horizons[name])
                for name in self._horizons[(timeframe, version)]
                if name in totals.horizons
            ]
            bins = [
                ConfidenceBin(
                    f"{b / CONFIDENCE_BINS:.1f}-{(b + 1) / CONFIDENCE_BINS:.1f}",
                    n,
                    totals.bin_confidence[b] / n,
                    totals.bin_wins[b] / n,
                )
                for b, n in enumerate(totals.bin_count)
                if n
            ]
            trades = totals.trades
            ece = (
                sum(c.trades / trades * abs(c.win_rate - c.mean_confidence) for c in bins)
                if trades
                else None
            )
            out.append(
                VersionQuality(
                    timeframe=timeframe,
                    model_version=version,
                    interval_level=level,
                    horizons=horizons,
                    trades=trades,
                    win_rate=totals.wins / trades if trades else None,
                    mean_confidence=sum(totals.bin_confidence) / trades if trades else None,
                    confidence_ece=ece,
                    reliability=bins,
                    warnings=_drift_warnings(timeframe, version, level, totals),
                )
            )
        return out

    def _publish(self) -> None:
        """Prometheus gauges and a log line per new drift warning."""
        for entry in self.report():
            labels = (entry.timeframe, entry.model_version)
            for h in entry.horizons:
                LIVE_RESOLVED.labels(*labels, h.horizon).set(h.resolved)
                if h.coverage_high is not None and h.coverage_low is not None:
                    LIVE_COVERAGE.labels(*labels, h.horizon, "high").set(h.coverage_high)
                    LIVE_COVERAGE.labels(*labels, h.horizon, "low").set(h.coverage_low)
                if h.skill is not None:
                    LIVE_SKILL.labels(*labels, h.horizon).set(h.skill)
            if entry.confidence_ece is not None:
                LIVE_ECE.labels(*labels).set(entry.confidence_ece)
            for warning in entry.warnings:
                if warning not in self._warned:
                    self._warned.add(warning)
                    log.warning("model drift: %s", warning)


def _ratio(num: float, den: int) -> float | None:
    return num / den if den else None


def _horizon_quality(name: str, entry: _HorizonTotals) -> HorizonQuality:
    recent = [side for pair in entry.recent for side in pair]
    mse_served = _ratio(entry.sse_served, 2 * entry.resolved)
    mse_baseline = _ratio(entry.sse_baseline, 2 * entry.baseline_rows)
    return HorizonQuality(
        horizon=name,
        resolved=entry.resolved,
        coverage_high=_ratio(entry.inside_high, entry.intervals),
        coverage_low=_ratio(entry.inside_low, entry.intervals),
        recent_coverage=_ratio(sum(recent), len(recent)),
        mse_served=mse_served,
        mse_baseline=mse_baseline,
        skill=None
        if mse_served is None or not mse_baseline
        else 1 - entry.sse_served / entry.sse_baseline,
    )


def _drift_warnings(
    timeframe: str, version: str, level: float | None, totals: _VersionTotals
) -> list[str]:
    if level is None:
        return []
    warnings = []
    for name, entry in totals.horizons.items():
        sides = [side for pair in entry.recent for side in pair]
        if len(entry.recent) < DRIFT_WINDOW // 5:
            continue  # too few to tell drift from noise
        coverage = sum(sides) / len(sides)
        band = max(COVERAGE_BAND, 2 * math.sqrt(level * (1 - level) / len(sides)))
        if abs(coverage - level) > band:
            warnings.append(
                f"{timeframe} v{version} {name}: live coverage {coverage:.3f} over the last "
                f"{len(entry.recent)} predictions is outside {level:.2f} ± {band:.3f}"
            )
    return warnings
