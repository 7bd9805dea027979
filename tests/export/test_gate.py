"""The gate's test on series with known answers: Diebold-Mariano with a HAC variance."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from export.baselines import fit_baseline_stack, fit_blend, fit_stack
from export.gate import GATE_ALPHA, dm_test, probability_gate, range_gate
from orchestrator.features.head import BASE_RATE, BASELINES, MODEL, NETWORKS, stack_ranges


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
    reference = y * rng.lognormal(0, 0.4, (n, 2))
    better = y * rng.lognormal(0, 0.2, (n, 2))
    same = reference + rng.normal(0, 1e-3, (n, 2))
    ts, lags = np.arange(n), [1, 1]
    assert [d.served for d in range_gate(better, reference, y, ts, lags)] == [NETWORKS] * 2
    decisions = range_gate(same, reference, y, ts, lags)
    assert [d.served for d in decisions] == [BASELINES] * 2
    assert all(d.baseline == BASELINES and d.rows == n for d in decisions)
    # No nested blend yet (NaN): the baselines' blend is served, untested.
    first = range_gate(np.full((n, 2), np.nan), reference, y, ts, lags)
    assert [d.served for d in first] == [BASELINES] * 2
    assert np.isnan(first[0].p_value)


def test_the_baselines_blend_leaves_the_networks_out_and_beats_each_baseline() -> None:
    """Two baselines that each see half of the signal: their blend beats both, and carries no
    weight on the networks even when a network is the best input."""
    rng = np.random.default_rng(6)
    n = 4000
    a, b = rng.gamma(2.0, 1.0, (n, 1)), rng.gamma(2.0, 1.0, (n, 1))
    y = a + b
    har, log_har = 2 * a + 2.0, 2 * b + 2.0
    network = y + rng.normal(0, 0.1, (n, 1))
    inputs = [network, network, har, np.full((n, 1), 4.0), log_har, np.full((n, 1), 4.0)]
    weights = fit_baseline_stack(inputs, y, [1])
    assert weights.shape == (1, 7)
    assert weights[0, 1] == weights[0, 2] == 0.0
    assert weights[0, 1:].sum() == pytest.approx(1.0)
    blend = stack_ranges(weights, inputs)
    mse = {name: float(((x - y) ** 2).mean()) for name, x in (("har", har), ("log_har", log_har))}
    assert float(((blend - y) ** 2).mean()) < 0.8 * min(mse.values())
    with_networks = fit_stack(inputs, y)
    assert with_networks[0, 1] + with_networks[0, 2] > 0.9


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


def test_the_blends_trust_their_fit_by_the_number_of_independent_outcomes() -> None:
    """The same rows fit least-squares weights when each is its own outcome and fall back to
    equal weights on the baselines when the labels span so many bars that few outcomes remain;
    the networks' blend leans on the same prior, so a network earns weight only with outcomes."""
    rng = np.random.default_rng(7)
    n = 4000
    signal = rng.gamma(2.0, 1.0, (n, 1))
    y = signal * rng.lognormal(0, 0.2, (n, 1))
    noise = [signal * rng.lognormal(0, s, (n, 1)) for s in (0.1, 0.8, 0.9, 1.0)]
    network = y * rng.lognormal(0, 0.05, (n, 1))
    inputs = [network, network, *noise]
    fitted = fit_baseline_stack(inputs, y, [1])
    assert fitted[0, 3] > 0.9  # the one good baseline carries the one-bar fit
    sparse = fit_baseline_stack(inputs, y, [n])  # one outcome: nearly the equal blend
    np.testing.assert_allclose(sparse[0, 3:], 0.25, atol=0.01)
    assert sparse[0, :3].tolist() == [0.0, 0.0, 0.0]
    assert fit_blend(inputs, y, [1])[0, 1:3].sum() > 0.85
    prior = fit_blend(inputs, y, [n])
    assert prior[0, 1:3].sum() < 0.01
    np.testing.assert_allclose(prior[0, 3:], 0.25, atol=0.01)
