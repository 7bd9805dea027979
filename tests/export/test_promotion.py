"""The promotion test on data with known answers: a volatility regime change, shuffled targets."""

from __future__ import annotations

import numpy as np
import pytest

from export.evaluation import expected_calibration_error
from export.promotion import (
    PROMOTE,
    REJECT,
    WAIT,
    CalibrationSums,
    Evidence,
    decide,
    decide_live,
    run_test,
)

LABEL_BARS = [6, 48]  # two horizons: four range columns


def _market(seed: int, n: int, *, scale: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(signal, realised ranges, rolling-mean baseline) in a regime of volatility `scale`: the
    ranges follow a persistent signal a trained model can read and a rolling mean cannot."""
    rng = np.random.default_rng(seed)
    signal = np.zeros(n)
    for t in range(1, n):
        signal[t] = 0.97 * signal[t - 1] + 0.25 * rng.normal()
    level = scale * np.exp(0.5 * signal)[:, None] * np.array([1.0, 1.0, 2.5, 2.5])
    realised = level * rng.lognormal(-0.02, 0.2, size=(n, 4))
    past = np.vstack([np.full((1, 4), scale), realised[:-1]])
    rolling = np.array([past[max(0, t - 50) : t + 1].mean(axis=0) for t in range(n)])
    return level, realised, rolling


def _evidence(seed: int, n: int, challenger_of: str, coverage: float = 0.8) -> Evidence:
    """Rows after a regime change from volatility 1 to 2: the champion was trained before it
    (reads the signal, at the old scale), the challenger after it (or on shuffled targets)."""
    rng = np.random.default_rng(seed + 1)
    level, realised, rolling = _market(seed, n, scale=2.0)
    champion = level / 2.0
    challenger = {
        "new_regime": level,
        "shuffled": level[rng.permutation(n)],
    }[challenger_of]
    p_win = rng.uniform(0.3, 0.7, size=n)
    return Evidence(
        y=realised,
        ts=np.arange(n, dtype=np.int64) * 300,
        label_bars=LABEL_BARS,
        champion=champion,
        challenger=challenger,
        baselines={"rolling_mean": rolling, "train_mean": np.full_like(realised, 1.6)},
        inside=rng.random((n, 4)) < coverage,
        interval_level=0.8,
        p_win=p_win,
        won=(rng.random(n) < p_win).astype(np.float64),
    )


def test_a_challenger_trained_after_a_regime_change_is_promoted() -> None:
    decision = decide(_evidence(1, 3000, "new_regime"), _evidence(2, 400, "new_regime"))
    assert decision.verdict == PROMOTE, decision.reason
    assert decision.offline.versus_champion.mse_skill > 0.3
    assert decision.offline.versus_baseline.against == "rolling_mean"
    assert decision.offline.versus_baseline.p_mse < 0.01
    assert decision.shadow is not None
    assert decision.shadow.rows == 400


def test_a_challenger_trained_on_shuffled_targets_is_rejected() -> None:
    decision = decide(_evidence(3, 3000, "shuffled"), _evidence(4, 400, "shuffled"))
    assert decision.verdict == REJECT
    assert decision.reason.startswith("offline: does not beat the champion")
    assert "does not beat the rolling_mean" in decision.reason
    assert decision.offline.versus_baseline.mse_skill < 0
    assert decision.shadow is None


def test_offline_evidence_alone_never_promotes() -> None:
    decision = decide(_evidence(5, 3000, "new_regime"), _evidence(6, 120, "new_regime"))
    assert decision.verdict == WAIT
    assert "120 of 200 live shadow outcomes" in decision.reason
    assert decide(_evidence(5, 3000, "new_regime"), None).verdict == WAIT


def test_intervals_that_miss_their_level_reject_a_better_forecaster() -> None:
    decision = decide(_evidence(7, 3000, "new_regime", coverage=0.7), None)
    assert decision.verdict == REJECT
    assert "interval coverage 0.69" in decision.reason
    assert "not within 0.03 of 0.80" in decision.reason
    assert decision.offline.versus_champion.beaten


def test_a_challenger_that_fails_live_is_rejected_with_the_live_numbers() -> None:
    decision = decide(_evidence(8, 3000, "new_regime"), _evidence(9, 400, "shuffled"))
    assert decision.verdict == REJECT
    assert decision.reason.startswith("live shadow:")
    assert decision.shadow is not None
    assert decision.shadow.failures


def test_calibration_sums_pool_like_the_rows_they_replace() -> None:
    """The registry keeps the offline rows' sums, not the rows: pooled sums read the same
    coverage and ECE as the rows concatenated (export/evaluation's deciles, edges included)."""
    offline, live = _evidence(1, 1500, "new_regime"), _evidence(2, 400, "new_regime")
    edges = np.array([0.0, 0.1, 0.3, 0.30000000000000004, 0.9, 1.0])  # decile edges and ties
    live = live._replace(p_win=np.concatenate([live.p_win[: -edges.size], edges]))
    pooled = CalibrationSums.of(offline) + CalibrationSums.of(live)
    p = np.concatenate([offline.p_win, live.p_win])
    won = np.concatenate([offline.won, live.won])
    assert pooled.ece == pytest.approx(expected_calibration_error(p, won), abs=1e-12)
    inside = np.concatenate([offline.inside.ravel(), live.inside.ravel()])
    assert pooled.coverage == pytest.approx(inside.mean(), abs=1e-12)
    # decide() from the evidence and decide_live() from the stored offline result agree.
    first = decide(offline, live, min_shadow_outcomes=100)
    again = decide_live(run_test(offline), live, min_shadow_outcomes=100)
    assert again == first
