"""The baselines and the serving head's fitting, on data whose answer is known."""

from __future__ import annotations

import numpy as np

from export.baselines import (
    fit_calibration,
    fit_har,
    fit_interval_ratios,
    fit_seasonal,
    fit_stack,
)
from export.evaluation import expected_calibration_error
from orchestrator.features.baseline import SEASON_CELLS
from orchestrator.features.head import har_ranges, seasonal_ranges, stack_ranges

RNG_SEED = 5


def test_seasonal_profile_is_recovered_from_noisy_rows() -> None:
    rng = np.random.default_rng(RNG_SEED)
    cells = np.arange(SEASON_CELLS)
    truth = np.stack([1 + np.sin(cells / 24 * 2 * np.pi), 2 + np.cos(cells / 7)], axis=1)
    season = rng.integers(0, SEASON_CELLS, 200_000)
    y = truth[season] + rng.normal(0, 0.3, (season.size, 2))
    table = fit_seasonal(season, y)
    assert table.shape == (SEASON_CELLS, 2)
    # ~1,190 rows per cell: shrinkage moves a cell by 30/1220 of its distance to the mean.
    assert np.abs(table - truth).max() < 0.1
    np.testing.assert_allclose(seasonal_ranges(table, season[:5]), table[season[:5]])


def test_an_empty_cell_falls_back_to_the_overall_mean() -> None:
    season = np.zeros(1000, np.int64)  # every row in cell 0
    y = np.full((1000, 2), 3.0)
    table = fit_seasonal(season, y)
    np.testing.assert_allclose(table[100], [3.0, 3.0])


def test_har_recovers_a_linear_relation() -> None:
    rng = np.random.default_rng(RNG_SEED)
    x = rng.normal(0, 1, (50_000, 4))
    coef = np.array([[0.5, 1.0, 0.0, -0.5, 0.25]])
    y = coef[:, 0] + x @ coef[:, 1:].T + rng.normal(0, 0.1, (50_000, 1))
    fitted = fit_har(x, y)
    np.testing.assert_allclose(fitted, coef, atol=0.01)
    np.testing.assert_allclose(har_ranges(fitted, x[:3]), y[:3], atol=0.5)


def test_stack_gives_no_weight_to_an_uninformative_network() -> None:
    rng = np.random.default_rng(RNG_SEED)
    n = 20_000
    signal = rng.gamma(2.0, 1.0, (n, 2))
    y = signal + rng.normal(0, 0.2, (n, 2))
    noise_net = rng.gamma(2.0, 1.0, (n, 2))
    inputs = [noise_net, noise_net * 0.9 + 0.1, signal, np.full((n, 2), signal.mean())]
    weights = fit_stack(inputs, y)
    assert weights.shape == (2, 5)
    assert (weights[:, 1:] >= 0).all()
    np.testing.assert_allclose(weights[:, 3], 1.0, atol=0.02)  # the HAR column carries it
    assert np.abs(weights[:, 1:3]).max() < 0.02
    mse = ((stack_ranges(weights, inputs) - y) ** 2).mean()
    assert mse < 0.045  # noise variance 0.04


def test_split_conformal_intervals_cover_the_nominal_share() -> None:
    rng = np.random.default_rng(RNG_SEED)
    n = 40_000
    predicted = rng.gamma(3.0, 1.0, (n, 2))
    y = predicted * rng.lognormal(0, 0.5, (n, 2))  # multiplicative, heteroscedastic errors
    ratios = fit_interval_ratios(predicted[: n // 2], y[: n // 2], level=0.8)
    assert (ratios[:, 0] < 1).all()
    assert (ratios[:, 1] > 1).all()
    test_pred, test_y = predicted[n // 2 :], y[n // 2 :]
    inside = (test_y >= test_pred * ratios[:, 0]) & (test_y <= test_pred * ratios[:, 1])
    coverage = inside.mean(axis=0)
    assert np.abs(coverage - 0.8).max() < 0.015  # binomial sd over 20,000 rows is 0.003


def test_isotonic_calibration_repairs_overconfident_probabilities() -> None:
    rng = np.random.default_rng(RNG_SEED)
    n = 40_000
    z = rng.normal(0, 1, n)
    true_p = 1 / (1 + np.exp(-z))
    raw = 1 / (1 + np.exp(-3 * z))  # right order, far too confident
    outcome = (rng.random(n) < true_p).astype(np.float64)
    calibration = fit_calibration(raw[: n // 2], outcome[: n // 2])
    calibrated = calibration(raw[n // 2 :])
    assert expected_calibration_error(raw[n // 2 :], outcome[n // 2 :]) > 0.08
    assert expected_calibration_error(calibrated, outcome[n // 2 :]) < 0.02
    assert np.all(np.diff(calibration.y) >= 0)  # monotone: ranking kept


def test_expected_calibration_error_of_known_cases() -> None:
    outcome = np.array([1.0] * 70 + [0.0] * 30)
    assert expected_calibration_error(np.full(100, 0.7), outcome) < 1e-12
    assert abs(expected_calibration_error(np.full(100, 0.9), outcome) - 0.2) < 1e-12


def test_a_single_class_leaves_probabilities_unchanged() -> None:
    calibration = fit_calibration(np.array([0.2, 0.4]), np.array([1.0, 1.0]))
    np.testing.assert_allclose(calibration(np.array([0.3])), [0.3])


def test_intervals_start_at_zero_where_many_ranges_are_exactly_zero() -> None:
    """Short horizons often realise no move at all: such a column's interval is [0, q80], one
    with few zeros keeps equal tails; both cover the nominal share."""
    rng = np.random.default_rng(RNG_SEED)
    n = 40_000
    predicted = rng.gamma(3.0, 1.0, (n, 3))
    moved = rng.random((n, 3)) >= np.array([0.25, 0.05, 0.01])  # share of rows with no move
    y = np.where(moved, predicted * rng.lognormal(0, 0.5, (n, 3)), 0.0)
    ratios = fit_interval_ratios(predicted[: n // 2], y[: n // 2], level=0.8)
    np.testing.assert_array_equal(ratios[:2, 0], [0.0, 0.0])
    assert ratios[2, 0] > 0.0
    test_pred, test_y = predicted[n // 2 :], y[n // 2 :]
    inside = (test_y >= test_pred * ratios[:, 0]) & (test_y <= test_pred * ratios[:, 1])
    assert np.abs(inside.mean(axis=0) - 0.8).max() < 0.015
