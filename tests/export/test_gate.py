"""The gate's test on series with known answers: Diebold-Mariano with a HAC variance."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from export.gate import GATE_ALPHA, dm_test, probability_gate, range_gate, reference_baseline
from orchestrator.features.head import BASE_RATE, MODEL, NETWORKS


def test_without_lags_the_test_is_the_one_sided_t_test_of_the_mean() -> None:
    rng = np.random.default_rng(1)
    diff = rng.normal(-0.05, 1.0, 2000)
    statistic, p_value = dm_test(diff, np.arange(2000), label_bars=0)
    t = stats.ttest_1samp(diff, 0.0, alternative="less")
    assert abs(p_value - t.pvalue) < 1e-3
    assert abs(statistic - t.statistic) < 0.01


def test_overlapping_labels_widen_the_variance() -> None:
    """A 20-bar moving sum of noise: the plain t-test finds an effect that is not there far more
    often than 5 %; the HAC test (40 lags for 20-bar labels) stays near its level."""
    rng = np.random.default_rng(2)
    rejections_plain = rejections_hac = 0
    for _ in range(200):
        noise = rng.normal(0, 1, 1020)
        diff = np.convolve(noise, np.ones(20), "valid")[:1000]
        rejections_plain += dm_test(diff, np.arange(1000), label_bars=0)[1] < GATE_ALPHA
        rejections_hac += dm_test(diff, np.arange(1000), label_bars=20)[1] < GATE_ALPHA
    assert rejections_plain > 40  # > 20 %
    assert rejections_hac < 25  # near 5 % (12.5 % allowed for 200 draws)


def test_rows_at_the_same_time_count_as_one_observation() -> None:
    diff = np.repeat(np.random.default_rng(3).normal(-0.1, 1.0, 500), 3)  # 3 symbols agree
    ts = np.repeat(np.arange(500), 3)
    assert dm_test(diff, ts, 0)[1] == pytest.approx(dm_test(diff[::3], np.arange(500), 0)[1])


def test_too_few_times_are_not_tested() -> None:
    assert np.isnan(dm_test(np.full(10, -1.0), np.arange(10), 0)[1])


def test_the_range_gate_serves_the_networks_only_with_evidence() -> None:
    rng = np.random.default_rng(4)
    n = 3000
    y = rng.gamma(2.0, 1.0, (n, 2))
    baselines = {"train_mean": np.full((n, 2), 2.0), "har": y * rng.lognormal(0, 0.4, (n, 2))}
    better = y * rng.lognormal(0, 0.2, (n, 2))
    same = baselines["har"] + rng.normal(0, 1e-3, (n, 2))
    ts, lags = np.arange(n), [1, 1]
    assert [d.served for d in range_gate(better, baselines, y, ts, lags)] == [NETWORKS] * 2
    decisions = range_gate(same, baselines, y, ts, lags)
    assert [d.served for d in decisions] == ["har", "har"]
    assert all(d.baseline == "har" and d.rows == n for d in decisions)
    # No nested blend yet (NaN): the best baseline is served, untested.
    first = range_gate(np.full((n, 2), np.nan), baselines, y, ts, lags)
    assert [d.served for d in first] == ["har", "har"]
    assert np.isnan(first[0].p_value)


def test_the_probability_gate_needs_brier_skill_over_the_base_rate() -> None:
    rng = np.random.default_rng(5)
    n = 4000
    p_true = rng.uniform(0.2, 0.6, n)
    won = (rng.random(n) < p_true).astype(np.float64)
    base = np.full(n, won.mean())
    ts = np.arange(n)
    assert probability_gate(p_true, base, won, ts, 1).served == MODEL
    noise = np.clip(base + rng.normal(0, 0.05, n), 0, 1)
    decision = probability_gate(noise, base, won, ts, 1)
    assert decision.served == BASE_RATE
    assert decision.skill < 0


def test_har_stays_the_reference_unless_another_baseline_clearly_beats_it() -> None:
    rng = np.random.default_rng(6)
    n = 3000
    y = rng.gamma(2.0, 1.0, n)
    har = y * rng.lognormal(0, 0.4, n)
    ts = np.arange(n)
    # A baseline as good as HAR (lower MSE here by chance or not) does not replace it ...
    equal = y * rng.lognormal(0, 0.4, n)
    assert reference_baseline({"har": har, "har_gk": equal}, y, ts, 1) == "har"
    # ... a clearly better one does, and the best of several that do is taken.
    better, best = y * rng.lognormal(0, 0.2, n), y * rng.lognormal(0, 0.1, n)
    choice = reference_baseline({"har": har, "log_har": better, "har_gk": best}, y, ts, 1)
    assert choice == "har_gk"
