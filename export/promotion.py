"""The promotion test: written down before a challenger is trained, never tuned on its result.

A challenger (a model set retrained on newer bars) replaces the champion only when, on rows
neither of them was trained on (the bars since the champion's training ended, scored by the
champion as it is and by the challenger's nested walk-forward folds) and then again on live
shadow outcomes:

1. its served ranges beat **the champion's** by a one-sided Diebold–Mariano test (HAC variance,
   `PROMOTION_ALPHA`) on squared error **and** on QLIKE;
2. they beat **the best baseline** (the candidate baseline with the lowest squared error on the
   same rows) by the same two tests;
3. its intervals cover within `COVERAGE_TOLERANCE` of their nominal level;
4. its served probabilities have ECE <= `ECE_LIMIT`.

Live, rules 3 and 4 read the shadow outcomes pooled with the offline rows: ECE over ten bins
moves by about 0.05 between samples of a few hundred outcomes of a perfectly calibrated model,
so on the live rows alone rule 4 would reject good challengers by chance.

Losses are pooled over the range columns: per row the mean over the 2H columns, then averaged
per time (export/gate.dm_test), with twice the longest horizon's label bars as HAC lags, since
every column's label overlaps its neighbours up to that far. Pooling answers the question a
trader asks (is the new set better overall) and keeps one test per comparison, instead of 2H
tests of which some fail by chance.

Three verdicts: PROMOTE, REJECT (with the failed rules), or WAIT while the live shadow outcomes
number fewer than the minimum (offline evidence alone never promotes).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import msgspec
import numpy as np
import numpy.typing as npt

from export.gate import HAC_LAGS_PER_LABEL_BAR, dm_test, qlike

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
Bool = npt.NDArray[np.bool_]

PROMOTION_ALPHA = 0.05
COVERAGE_TOLERANCE = 0.03  # |coverage - level|, as a fraction
ECE_LIMIT = 0.03
MIN_SHADOW_OUTCOMES = 200  # live outcomes of the challenger in shadow before it may be promoted
ECE_BINS = 10

PROMOTE = "promote"
REJECT = "reject"
WAIT = "wait"


class Evidence(NamedTuple):
    """One comparison's rows: realised ranges and what each contender served for them."""

    y: F64  # (n, 2H) realised up/down ranges, ATR units
    ts: I64  # (n,) bar times (rows of one time are averaged before testing)
    label_bars: list[int]  # (H,) bars each horizon's label spans
    champion: F64  # (n, 2H) the champion's served ranges
    challenger: F64  # (n, 2H) the challenger's served ranges
    baselines: dict[str, F64]  # name -> (n, 2H) candidate baselines (HAR, seasonal, ...)
    inside: Bool  # (n, 2H) the realised range inside the challenger's interval
    interval_level: float  # nominal coverage of that interval
    p_win: F64  # (m,) the challenger's served P(win) for each probability outcome
    won: F64  # (m,) 1 when it won


class CalibrationSums(msgspec.Struct, frozen=True):
    """What rules 3 and 4 read, as sums: offline and live rows pool by adding them, so the
    registry keeps a few numbers instead of the offline rows."""

    inside: int  # realised ranges inside the interval
    intervals: int
    bins: list[list[float]]  # per probability decile: [count, sum of P(win), wins]

    @classmethod
    def of(cls, evidence: Evidence) -> CalibrationSums:
        edges = np.linspace(0, 1, ECE_BINS + 1)  # the deciles of export/evaluation.reliability
        index = np.clip(np.searchsorted(edges, evidence.p_win, side="right") - 1, 0, ECE_BINS - 1)
        bins = [
            [
                float((index == b).sum()),
                float(evidence.p_win[index == b].sum()),
                float(evidence.won[index == b].sum()),
            ]
            for b in range(ECE_BINS)
        ]
        return cls(int(evidence.inside.sum()), int(evidence.inside.size), bins)

    def __add__(self, other: CalibrationSums) -> CalibrationSums:
        bins = [
            [a + b for a, b in zip(x, y, strict=True)]
            for x, y in zip(self.bins, other.bins, strict=True)
        ]
        return CalibrationSums(self.inside + other.inside, self.intervals + other.intervals, bins)

    @property
    def coverage(self) -> float:
        return self.inside / self.intervals if self.intervals else math.nan

    @property
    def ece(self) -> float:
        total = sum(count for count, _, _ in self.bins)
        if not total:
            return math.nan
        return sum(
            count / total * abs(wins / count - p_sum / count)
            for count, p_sum, wins in self.bins
            if count
        )


class Comparison(msgspec.Struct, frozen=True):
    """The challenger against one incumbent: the p-values and the mean losses."""

    against: str  # "champion" or a baseline's name
    p_mse: float  # one-sided DM, H1: the challenger's squared error is lower
    p_qlike: float
    mse_skill: float  # 1 - challenger MSE / incumbent MSE
    qlike_skill: float

    @property
    def beaten(self) -> bool:
        return self.p_mse < PROMOTION_ALPHA and self.p_qlike < PROMOTION_ALPHA


class TestResult(msgspec.Struct, frozen=True):
    """The four rules on one set of rows (offline or live)."""

    rows: int
    versus_champion: Comparison
    versus_baseline: Comparison  # the best baseline on these rows
    coverage: float
    ece: float
    failures: list[str]
    calibration: CalibrationSums | None = None  # these rows' own sums (pooled later)


class PromotionDecision(msgspec.Struct, frozen=True):
    """What happens to the challenger, and every number that decided it."""

    verdict: str  # PROMOTE, REJECT or WAIT
    reason: str
    offline: TestResult
    shadow: TestResult | None
    shadow_outcomes: int
    min_shadow_outcomes: int
    alpha: float = PROMOTION_ALPHA
    coverage_tolerance: float = COVERAGE_TOLERANCE
    ece_limit: float = ECE_LIMIT


def _compare(evidence: Evidence, incumbent: F64, against: str) -> Comparison:
    """The challenger against `incumbent`, losses pooled over the columns of each row."""
    y, challenger = evidence.y, evidence.challenger
    lags = HAC_LAGS_PER_LABEL_BAR * max(evidence.label_bars)
    mse_new, mse_old = ((challenger - y) ** 2).mean(axis=1), ((incumbent - y) ** 2).mean(axis=1)
    ql_new, ql_old = qlike(challenger, y).mean(axis=1), qlike(incumbent, y).mean(axis=1)
    _, p_mse = dm_test(mse_new - mse_old, evidence.ts, lags)
    _, p_qlike = dm_test(ql_new - ql_old, evidence.ts, lags)
    return Comparison(
        against,
        p_mse,
        p_qlike,
        1 - float(mse_new.mean()) / max(float(mse_old.mean()), 1e-12),
        1 - float(ql_new.mean()) / max(float(ql_old.mean()), 1e-12),
    )


def run_test(evidence: Evidence, calibration: CalibrationSums | None = None) -> TestResult:
    """The four rules on one set of rows; `failures` names each rule that failed, in words.
    Coverage and ECE are read on these rows' sums plus `calibration` (rows read before)."""
    if not evidence.baselines:
        raise ValueError("the promotion test needs at least one baseline to compare with")
    best_name = min(
        evidence.baselines,
        key=lambda name: float(((evidence.baselines[name] - evidence.y) ** 2).mean()),
    )
    champion = _compare(evidence, evidence.champion, "champion")
    baseline = _compare(evidence, evidence.baselines[best_name], best_name)
    own = CalibrationSums.of(evidence)
    pooled = own if calibration is None else calibration + own
    coverage, ece = pooled.coverage, pooled.ece
    failures = [
        f"does not beat the {c.against} (one-sided DM p = {c.p_mse:.3f} on squared error, "
        f"{c.p_qlike:.3f} on QLIKE; both must be < {PROMOTION_ALPHA})"
        for c in (champion, baseline)
        if not c.beaten
    ]
    if not abs(coverage - evidence.interval_level) <= COVERAGE_TOLERANCE:
        failures.append(
            f"interval coverage {coverage:.3f} is not within {COVERAGE_TOLERANCE:.2f} of "
            f"{evidence.interval_level:.2f}"
        )
    if not ece <= ECE_LIMIT:
        failures.append(f"probability ECE {ece:.3f} is above {ECE_LIMIT}")
    return TestResult(len(evidence.y), champion, baseline, coverage, ece, failures, own)


def decide(
    offline: Evidence,
    shadow: Evidence | None,
    min_shadow_outcomes: int = MIN_SHADOW_OUTCOMES,
) -> PromotionDecision:
    """PROMOTE when both the offline rows and at least `min_shadow_outcomes` live shadow
    outcomes pass every rule; REJECT as soon as either fails; WAIT for more live outcomes."""
    return decide_live(run_test(offline), shadow, min_shadow_outcomes)


def decide_live(
    first: TestResult,
    shadow: Evidence | None,
    min_shadow_outcomes: int = MIN_SHADOW_OUTCOMES,
) -> PromotionDecision:
    """The same decision from the offline result as the registry keeps it (its numbers and its
    calibration sums) and the live shadow rows so far."""
    outcomes = 0 if shadow is None else len(shadow.y)

    def decision(verdict: str, reason: str, live: TestResult | None = None) -> PromotionDecision:
        return PromotionDecision(verdict, reason, first, live, outcomes, min_shadow_outcomes)

    if first.failures:
        return decision(REJECT, "offline: " + "; ".join(first.failures))
    if shadow is None or outcomes < min_shadow_outcomes:
        return decision(
            WAIT, f"passed offline; {outcomes} of {min_shadow_outcomes} live shadow outcomes so far"
        )
    # A few hundred outcomes measure ECE to about +-0.05 (ten bins): the live calibration rules
    # read the live outcomes together with the offline rows, the DM tests the live ones alone.
    live = run_test(shadow, calibration=first.calibration)
    if live.failures:
        return decision(REJECT, "live shadow: " + "; ".join(live.failures), live)
    return decision(
        PROMOTE,
        f"beat the champion and the best baseline offline ({first.rows} rows) and live "
        f"({outcomes} shadow outcomes)",
        live,
    )
