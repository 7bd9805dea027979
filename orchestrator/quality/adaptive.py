"""Intervals that hold under drift: adaptive conformal inference (Gibbs & Candès 2021).

Each served interval column (the high or the low of a horizon) carries a miscoverage level
alpha_t. Every resolved outcome moves it: alpha_{t+1} = alpha_t + gamma (alpha - miss_t), so a
run of misses widens the interval and a run of hits narrows it until the long-run miss rate is
alpha. Summed from the start, alpha_t = alpha + gamma (inside - (1 - alpha) n) over the n outcomes
resolved so far, of which `inside` were inside: a function of the live-quality totals that every
replica already shares through Redis (orchestrator/quality/store.py), so all replicas
serve the same level without a state of their own. The head's conformal quantile table turns the
level into multipliers (orchestrator/features/head.py: interval_ratios).

The same update replays the test folds in time order for the model card
(export/evaluation.py: adaptive_coverage), with each outcome arriving `horizon` bars late, as live.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

ADAPTIVE_RATE = 0.005  # gamma, Gibbs & Candès' choice; fixed before any fold was replayed
MISCOVERAGE_BOUNDS = (0.005, 0.6)  # an interval never narrower than 40 % nor wider than 99.5 %


def aci_miscoverage(target: float, rate: float, resolved: float, inside: float) -> float:
    """alpha_t after `resolved` outcomes of which `inside` were inside their interval."""
    alpha = target + rate * (inside - (1.0 - target) * resolved)
    return float(np.clip(alpha, *MISCOVERAGE_BOUNDS))


def column_miscoverage(
    target: float, rate: float, horizons: list[str], sums: dict[str, float]
) -> F64:
    """(2H,) alpha_t per interval column from live-quality totals (`{horizon}:intervals`,
    `{horizon}:inside_high`, `{horizon}:inside_low`)."""
    out = []
    for horizon in horizons:
        n = sums.get(f"{horizon}:intervals", 0.0)
        for side in ("high", "low"):
            inside = sums.get(f"{horizon}:inside_{side}", 0.0)
            out.append(aci_miscoverage(target, rate, n, inside))
    return np.asarray(out, np.float64)
