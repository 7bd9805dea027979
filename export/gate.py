"""The gate: a test fixed before training that decides, per served output, model or baseline.

Written down before any model is scored and never tuned on the test folds:

- **ranges**, per output column (up/down per horizon): the reference is the **baselines' blend**,
  a convex blend of HAR, log-HAR, HAR on Garman–Klass and the seasonal profile fitted by least
  squares on the earlier folds (forecast combination: no single baseline wins every fold, and
  picking one by its past MSE swung between them fold after fold). The networks' blend, the
  same stack with the GRU and the Transformer added, is served only when a one-sided
  Diebold–Mariano test finds its squared-error loss below the baselines' blend's at
  `GATE_ALPHA` = 0.05, *and* its mean QLIKE loss is not above it. Otherwise the baselines' blend
  is served. Losses are the out-of-sample ones of the nested walk-forward folds.
- **probabilities** (P(long wins), P(short wins), the confidence): the calibrated model is
  served only when the same test finds its Brier loss below the base rate's; otherwise the base
  rate is served.

The variance of the mean loss difference is Newey–West (HAC, Bartlett kernel) with twice as many
lags as the output's label spans bars: labels over h bars overlap, so neighbouring loss
differences are correlated up to h - 1 bars apart, and the Bartlett kernel down-weights the
far lags (measured in tests/export/test_gate.py: a 20-bar moving sum of noise is rejected 12.5 %
of the time at 5 % with h lags, 9 % with 2h). Rows of several symbols at one time are averaged
first, so the test runs on one series in time order. With too few rows to test, the baseline is
served.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
import numpy.typing as npt
import statsmodels.api as sm  # type: ignore[import-untyped]
from scipy import stats  # type: ignore[import-untyped]

from orchestrator.features.head import BASE_RATE, BASELINES, MODEL, NETWORKS

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

GATE_ALPHA = 0.05
HAC_LAGS_PER_LABEL_BAR = 2
MIN_TEST_TIMES = 30  # fewer distinct times than this: no test, the baseline is served
QLIKE_FLOOR_ATR = 0.01


class GateDecision(msgspec.Struct, frozen=True):
    """What one output serves, and the numbers that decided it."""

    served: str  # NETWORKS / MODEL, or BASELINES / BASE_RATE
    baseline: str  # what the model was tested against (BASELINES / BASE_RATE)
    p_value: float  # one-sided DM: H1 = the model's loss is lower (NaN: too few rows to test)
    skill: float  # 1 - model loss / baseline loss on the tested rows (MSE or Brier)
    rows: int


def dm_test(loss_diff: F64, ts: I64, label_bars: int) -> tuple[float, float]:
    """(statistic, one-sided p) for H1: mean(loss_diff) < 0, HAC variance with
    HAC_LAGS_PER_LABEL_BAR x `label_bars` lags.

    Rows sharing a time are averaged into one observation first."""
    times, inverse = np.unique(ts, return_inverse=True)
    if times.size < MIN_TEST_TIMES:
        return math.nan, math.nan
    series = np.bincount(inverse, weights=loss_diff) / np.bincount(inverse)
    if np.allclose(series, series[0]):
        return math.nan, (0.0 if series[0] < 0 else 1.0)
    maxlags = int(min(max(HAC_LAGS_PER_LABEL_BAR * label_bars, 0), times.size - 2))
    fit = sm.OLS(series, np.ones(times.size)).fit(
        cov_type="HAC", cov_kwds={"maxlags": maxlags, "use_correction": True}
    )
    statistic = float(fit.tvalues[0])
    return statistic, float(stats.t.cdf(statistic, df=times.size - 1))


def qlike(pred: F64, y: F64) -> F64:
    """QLIKE per element, y/p - log(y/p) - 1 (both floored): 0 for a perfect forecast."""
    ratio = np.maximum(y, QLIKE_FLOOR_ATR) / np.maximum(pred, QLIKE_FLOOR_ATR)
    out: F64 = ratio - np.log(ratio) - 1
    return out


def _beats(challenger: F64, incumbent: F64, y: F64, ts: I64, lags: int) -> tuple[bool, float]:
    """(passes, p): the one-sided DM test of `challenger` against `incumbent` on squared error,
    with QLIKE not higher; the p-value compared with the caller's level."""
    diff = (challenger - y) ** 2 - (incumbent - y) ** 2
    _, p_value = dm_test(diff, ts, lags)
    qlike_worse = float((qlike(challenger, y) - qlike(incumbent, y)).mean())
    return qlike_worse <= 0, p_value


def range_gate(blend: F64, reference: F64, y: F64, ts: I64, lags: list[int]) -> list[GateDecision]:
    """Per column of the (n, 2H) predictions: serve NETWORKS (the networks' blend) or BASELINES
    (the baselines' blend `reference`), tested on the rows where both are known (NaN rows: no
    nested blend yet)."""
    tested = np.isfinite(blend).all(axis=1) & np.isfinite(reference).all(axis=1)
    decisions = []
    for j in range(y.shape[1]):
        if not tested.any():
            decisions.append(GateDecision(BASELINES, BASELINES, math.nan, math.nan, 0))
            continue
        blend_j, base_j, y_j = blend[tested, j], reference[tested, j], y[tested, j]
        qlike_ok, p_value = _beats(blend_j, base_j, y_j, ts[tested], lags[j])
        passed = p_value < GATE_ALPHA and qlike_ok
        blend_mse, base_mse = (
            float(((blend_j - y_j) ** 2).mean()),
            float(((base_j - y_j) ** 2).mean()),
        )
        skill = 1 - blend_mse / max(base_mse, 1e-12)
        served = NETWORKS if passed else BASELINES
        decisions.append(GateDecision(served, BASELINES, p_value, skill, int(tested.sum())))
    return decisions


def probability_gate(p: F64, base_rate: F64, outcome: F64, ts: I64, lags: int) -> GateDecision:
    """Serve the calibrated model's probability or the base rate (Brier loss)."""
    if len(p) == 0:
        return GateDecision(BASE_RATE, BASE_RATE, math.nan, math.nan, 0)
    model_loss, base_loss = (p - outcome) ** 2, (base_rate - outcome) ** 2
    _, p_value = dm_test(model_loss - base_loss, ts, lags)
    skill = 1 - float(model_loss.mean()) / max(float(base_loss.mean()), 1e-12)
    served = MODEL if p_value < GATE_ALPHA else BASE_RATE
    return GateDecision(served, BASE_RATE, p_value, skill, len(p))
