"""Live quality totals: what each resolved outcome adds to them, the running sums, and the report
built from them.

The sums are named as the fields of a (timeframe, version)'s Redis hash (store.py), so the
same `Totals` holds what every replica counted and what this replica counted in memory; scoring
writes those names and the report reads them, here in one place.

A drift warning is raised while the coverage of the last `DRIFT_WINDOW` resolved intervals of a
horizon leaves the nominal level by more than the larger of 3 points and two binomial standard
errors.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt
from prometheus_client import Gauge

from orchestrator.quality.adaptive import side_totals
from orchestrator.quality.open_rows import (
    BASELINE_HIGH,
    BASELINE_LOW,
    CONFIDENCE,
    DIRECTION,
    INTERVALS,
    LONG_TRADE,
    P_LONG,
    P_SHORT,
    RANGE_HIGH,
    RANGE_LOW,
    SHORT_TRADE,
    WON,
    Resolved,
)

log = logging.getLogger("orchestrator.quality")

F64 = npt.NDArray[np.float64]
Source = Literal["redis", "memory"]
Group = tuple[str, str]  # (timeframe, model version)
Increment = tuple[str, int | float]  # totals field, delta
DRIFT_WINDOW = 500
COVERAGE_BAND = 0.03
CONFIDENCE_BINS = 10

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


# Open predictions kept per horizon and key. A prediction of every bar overlaps its neighbours'
# labels almost entirely at long horizons, so live quality scores every s-th bar's, s =
# ceil(horizon bars / OUTCOMES_PER_HORIZON), and counts each outcome s times: the totals, the
# ratios and the adaptive levels read from them keep their scale. Scoring every bar held ~1,440
# open predictions per 5m key (its 5-day horizon), ~2.4 MB: 24 GB for 10,000 symbols.
OUTCOMES_PER_HORIZON = 24


def strides(horizon_bars: Sequence[int]) -> tuple[int, ...]:
    """Per horizon: every how many bars a prediction is scored (one tuple per distinct set of
    horizons: asked once per prediction, thousands per sweep)."""
    key = (tuple(horizon_bars), OUTCOMES_PER_HORIZON)
    found = _STRIDES.get(key)
    if found is None:
        found = _STRIDES[key] = tuple(max(1, -(-bars // key[1])) for bars in key[0])
    return found


_STRIDES: dict[tuple[tuple[int, ...], int], tuple[int, ...]] = {}


def tracked_horizons(weights: tuple[int, ...], bar_number: int) -> tuple[int, ...]:
    """The horizons (positions) that score the bar_number-th bar's prediction: those whose
    stride divides it. The answer repeats every lcm(strides) bars, so it is looked up by the
    bar's place in that cycle (thousands of predictions per sweep, a handful of answers)."""
    cycle = _CYCLES.get(weights)
    if cycle is None:
        cycle = _CYCLES[weights] = math.lcm(*weights)
    key = (weights, bar_number % cycle)
    found = _TRACKED.get(key)
    if found is None:
        found = _TRACKED[key] = _interned(
            tuple(k for k, stride in enumerate(weights) if bar_number % stride == 0)
        )
    return found


_CYCLES: dict[tuple[int, ...], int] = {}
_TRACKED: dict[tuple[tuple[int, ...], int], tuple[int, ...]] = {}


# Tuples every prediction of a key repeats (its horizons' bars and strides), kept once.
_INTERNED: dict[tuple[int, ...], tuple[int, ...]] = {}


def _interned(values: tuple[int, ...]) -> tuple[int, ...]:
    return _INTERNED.setdefault(values, values)


def resolved_increments(rows: Resolved) -> list[tuple[list[Increment], str | None]]:
    """Per row whose horizon ended: what it adds to the totals, and its drift mark ("11": the
    realised high and low both inside their intervals, "10", "01", "00"; None without them).
    At the label horizon also its trades, TP or SL first: in the served direction (binned by
    the served confidence), and long and short both (what P(long wins) and P(short wins)
    claimed), with the served probabilities summed for their online shifts (adaptive.py)."""
    h, v = rows.horizon, rows.values
    up, down = rows.realised()
    w, name = h.weight, h.name
    # Python numbers for the loop below (a numpy scalar per value costs more than the sums).
    served = ((v[:, RANGE_HIGH] - up) ** 2 + (v[:, RANGE_LOW] - down) ** 2).tolist()
    baseline = ((v[:, BASELINE_HIGH] - up) ** 2 + (v[:, BASELINE_LOW] - down) ** 2).tolist()
    bounds = v[:, INTERVALS]
    inside_high = ((up >= bounds[:, 0]) & (up <= bounds[:, 1])).astype(int).tolist()
    inside_low = ((down >= bounds[:, 2]) & (down <= bounds[:, 3])).astype(int).tolist()
    values = v.tolist() if h.is_label else []
    resolved, sse_served = f"{name}:resolved", f"{name}:sse_served"
    sse_baseline, baseline_rows = f"{name}:sse_baseline", f"{name}:baseline_rows"
    intervals, high_name, low_name = (
        f"{name}:intervals",
        f"{name}:inside_high",
        f"{name}:inside_low",
    )
    out: list[tuple[list[Increment], str | None]] = []
    for r in range(len(v)):
        increments: list[Increment] = [(resolved, w), (sse_served, w * _finite(served[r]))]
        if h.has_baseline:
            increments += [(sse_baseline, w * _finite(baseline[r])), (baseline_rows, w)]
        drift = None
        if h.has_intervals:
            high_in, low_in = inside_high[r], inside_low[r]
            increments += [(intervals, w), (high_name, w * high_in), (low_name, w * low_in)]
            drift = f"{high_in}{low_in}"
        if h.is_label:
            increments += _trade_increments(w, values[r])
        out.append((increments, drift))
    return out


def _trade_increments(w: int, row: list[float]) -> list[Increment]:
    long_won, short_won = int(row[LONG_TRADE] == WON), int(row[SHORT_TRADE] == WON)
    chosen = long_won if row[DIRECTION] > 0 else short_won
    confidence, p_long, p_short = float(row[CONFIDENCE]), float(row[P_LONG]), float(row[P_SHORT])
    b = min(int(confidence * CONFIDENCE_BINS), CONFIDENCE_BINS - 1)
    increments: list[Increment] = [
        ("trades", w),
        ("wins", w * chosen),
        (f"bin{b}:count", w),
        (f"bin{b}:confidence", w * confidence),
        (f"bin{b}:wins", w * chosen),
    ]
    for side, wins, p in (
        ("chosen", chosen, confidence),
        ("long", long_won, p_long),
        ("short", short_won, p_short),
    ):
        trades_name, wins_name, p_name = side_totals(side)
        increments += [(trades_name, w), (wins_name, w * wins), (p_name, w * p)]
    return increments


def _finite(value: float) -> float:
    """A squared error Redis can add (HINCRBYFLOAT refuses NaN and infinities)."""
    number = float(value)
    return number if math.isfinite(number) else 0.0


class Outcome(msgspec.Struct, frozen=True):
    """One resolved horizon of one prediction: what it adds to its group's totals."""

    timeframe: str
    version: str
    horizon: str
    claim: str  # {symbol}:{timeframe}:{bar epoch}:v{version}:{horizon}
    # Wall clock when this tracker resolved it: how long it waited unsent is measured from here.
    resolved_at: datetime
    level: float | None
    horizons: list[str]
    increments: list[Increment]
    drift: str | None  # "11": high and low inside their intervals, "10", "01", "00"


@dataclass
class Totals:
    """One (timeframe, version)'s running sums, named as the fields of its Redis hash."""

    level: float | None
    horizons: list[str]
    sums: dict[str, float] = field(default_factory=dict)
    drift: dict[str, deque[str]] = field(default_factory=dict)  # per horizon, newest first

    def add(self, outcome: Outcome) -> None:
        for name, delta in outcome.increments:
            self.sums[name] = self.sums.get(name, 0.0) + delta
        if outcome.drift is not None:
            recent = self.drift.setdefault(outcome.horizon, deque(maxlen=DRIFT_WINDOW))
            recent.appendleft(outcome.drift)

    def plus(self, newer: Totals) -> Totals:
        sums = dict(self.sums)
        for name, value in newer.sums.items():
            sums[name] = sums.get(name, 0.0) + value
        drift = {}
        for name in self.drift.keys() | newer.drift.keys():
            merged = [*newer.drift.get(name, ()), *self.drift.get(name, ())]
            drift[name] = deque(merged, maxlen=DRIFT_WINDOW)
        return Totals(self.level, self.horizons or newer.horizons, sums, drift)

    def count(self, name: str) -> int:
        return int(self.sums.get(name, 0.0))


class HorizonQuality(msgspec.Struct):
    horizon: str
    resolved: int
    coverage_high: float | None  # since counting began
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


class SideQuality(msgspec.Struct):
    """P(long wins) or P(short wins) against the trades of that side, scored whatever the
    signal's direction: what the probability's live shift follows (adaptive.py)."""

    side: str  # "long" or "short"
    trades: int
    win_rate: float | None
    mean_p: float | None  # the served probability, on average


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
    # "redis": every replica's totals as of the last pass; "memory": Redis did not answer (or is
    # not configured), the last totals read from it plus what this replica resolved since.
    source: Source = "memory"
    sides: list[SideQuality] = []


class Drift(NamedTuple):
    """A drift warning, with the served set it is about."""

    timeframe: str
    model_version: str
    warning: str


def publish(report: list[VersionQuality], warned: set[str]) -> list[Drift]:
    """Prometheus gauges, and a log line per drift warning not in `warned` (added to it);
    returns the new warnings."""
    new = []
    for entry in report:
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
            if warning not in warned:
                warned.add(warning)
                log.warning("model drift: %s", warning)
                new.append(Drift(entry.timeframe, entry.model_version, warning))
    return new


def _ratio(num: float, den: int) -> float | None:
    return num / den if den else None


def version_quality(group: Group, totals: Totals, source: Source) -> VersionQuality:
    timeframe, version = group
    horizons = [
        _horizon_quality(name, totals)
        for name in totals.horizons
        if totals.count(f"{name}:resolved")
    ]
    bins = []
    for b in range(CONFIDENCE_BINS):
        n = totals.count(f"bin{b}:count")
        if n:
            bins.append(
                ConfidenceBin(
                    f"{b / CONFIDENCE_BINS:.1f}-{(b + 1) / CONFIDENCE_BINS:.1f}",
                    n,
                    totals.sums[f"bin{b}:confidence"] / n,
                    totals.count(f"bin{b}:wins") / n,
                )
            )
    trades = totals.count("trades")
    confidence = sum(totals.sums.get(f"bin{b}:confidence", 0.0) for b in range(CONFIDENCE_BINS))
    ece = (
        sum(c.trades / trades * abs(c.win_rate - c.mean_confidence) for c in bins)
        if trades
        else None
    )
    return VersionQuality(
        timeframe=timeframe,
        model_version=version,
        interval_level=totals.level,
        horizons=horizons,
        trades=trades,
        win_rate=_ratio(totals.count("wins"), trades),
        mean_confidence=_ratio(confidence, trades),
        confidence_ece=ece,
        reliability=bins,
        warnings=_drift_warnings(timeframe, version, totals),
        source=source,
        sides=[_side_quality(side, totals) for side in ("long", "short")],
    )


def _side_quality(side: str, totals: Totals) -> SideQuality:
    trades_name, wins_name, p_name = side_totals(side)
    trades = totals.count(trades_name)
    return SideQuality(
        side,
        trades,
        _ratio(totals.sums.get(wins_name, 0.0), trades),
        _ratio(totals.sums.get(p_name, 0.0), trades),
    )


def _sides(entries: Iterable[str]) -> list[bool]:
    return [side == "1" for pair in entries for side in pair]


def _horizon_quality(name: str, totals: Totals) -> HorizonQuality:
    resolved = totals.count(f"{name}:resolved")
    intervals = totals.count(f"{name}:intervals")
    sse_served = totals.sums.get(f"{name}:sse_served", 0.0)
    sse_baseline = totals.sums.get(f"{name}:sse_baseline", 0.0)
    recent = _sides(totals.drift.get(name, ()))
    mse_served = _ratio(sse_served, 2 * resolved)
    mse_baseline = _ratio(sse_baseline, 2 * totals.count(f"{name}:baseline_rows"))
    return HorizonQuality(
        horizon=name,
        resolved=resolved,
        coverage_high=_ratio(totals.sums.get(f"{name}:inside_high", 0.0), intervals),
        coverage_low=_ratio(totals.sums.get(f"{name}:inside_low", 0.0), intervals),
        recent_coverage=_ratio(sum(recent), len(recent)),
        mse_served=mse_served,
        mse_baseline=mse_baseline,
        skill=None if mse_served is None or not mse_baseline else 1 - sse_served / sse_baseline,
    )


def _drift_warnings(timeframe: str, version: str, totals: Totals) -> list[str]:
    level = totals.level
    if level is None:
        return []
    warnings = []
    for name, entries in totals.drift.items():
        if len(entries) < DRIFT_WINDOW // 5:
            continue  # too few to tell drift from noise
        sides = _sides(entries)
        coverage = sum(sides) / len(sides)
        band = max(COVERAGE_BAND, 2 * math.sqrt(level * (1 - level) / len(sides)))
        if abs(coverage - level) > band:
            warnings.append(
                f"{timeframe} v{version} {name}: live coverage {coverage:.3f} over the last "
                f"{len(entries)} predictions is outside {level:.2f} ± {band:.3f}"
            )
    return warnings
