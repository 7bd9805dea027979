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

Probabilities follow the same kind of controller: each resolved trade moves its probability's
shift by rate (won - served), summed from the start rate (wins - sum of served probabilities), so
a win rate that drifts away from the one the folds showed is followed and the long-run mean of
the served probability meets the realised rate (calibration in the large). The rate remembers
PROBABILITY_MEMORY_OUTCOMES independent outcomes: overlapping labels of `label_bars` bars carry
about one independent outcome per `label_bars` bars (export/evaluation.py:
adaptive_probabilities replays it for the card).

Both rates are steps per outcome on the training set's universe. Live, outcomes arrive per bar
for every served series at once and move together when the whole market does, so a step is
scaled by the training set's symbols over the series served (`universe_rate`): a bar moves a
level as far whether it resolves two outcomes or ten thousand.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

ADAPTIVE_RATE = 0.005  # gamma, Gibbs & Candès' choice; fixed before any fold was replayed
MISCOVERAGE_BOUNDS = (0.005, 0.6)  # an interval never narrower than 40 % nor wider than 99.5 %
# Independent outcomes the probability shift remembers. Chosen on three sets' saved folds
# (2026-12-06, docs/models.md): 20 fixed the session set (P(short) ECE 0.042 -> 0.010) but made
# the real 1h and 1d sets' well-calibrated probabilities noisier (ECE up to 0.034, Brier 1 %
# worse); 200 is the shortest memory that left every real probability's Brier within 0.3 % and
# ECE <= 0.016 while the session set's P(short) still drops to 0.023.
PROBABILITY_MEMORY_OUTCOMES = 200
PROBABILITY_SHIFT_BOUND = 0.25  # live outcomes may move a probability this far at most


def side_totals(side: str) -> tuple[str, str, str]:
    """The totals of one side's trades ("long", "short", or "chosen": the signal's direction):
    how many, how many won, and the sum of the served probability that it wins."""
    return f"{side}:trades", f"{side}:wins", f"{side}:p"


# Live-quality totals per probability, in PROBABILITIES order (P(long), P(short), the
# confidence: the chosen side's): (trades, wins, sum of the served probability).
PROBABILITY_TOTALS = tuple(side_totals(side) for side in ("long", "short", "chosen"))


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


def probability_rate(label_bars: int, symbols: int) -> float:
    """The probability shift's step per outcome: PROBABILITY_MEMORY_OUTCOMES independent
    outcomes of `label_bars` overlapping bars on each of `symbols` series."""
    return 1.0 / (PROBABILITY_MEMORY_OUTCOMES * max(1, label_bars) * max(1, symbols))


def probability_shift(rate: float, wins: float, served: float) -> float:
    """The shift after outcomes with `wins` wins whose served probabilities summed to `served`."""
    bound = PROBABILITY_SHIFT_BOUND
    return float(np.clip(rate * (wins - served), -bound, bound))


def probability_shifts(rate: float, sums: dict[str, float]) -> F64:
    """(3,) shift of P(long), P(short) and the confidence from live-quality totals."""
    return np.asarray(
        [
            probability_shift(rate, sums.get(wins, 0.0), sums.get(p, 0.0))
            for _, wins, p in PROBABILITY_TOTALS
        ],
        np.float64,
    )


def universe_rate(rate: float, rate_symbols: int, served_series: int) -> float:
    """A step per outcome replayed on `rate_symbols` symbols, for `served_series` served live
    (rate_symbols 0: a head exported before the scaling, whose step is used as it is)."""
    if rate_symbols <= 0:
        return rate
    return rate * rate_symbols / max(1, served_series)
