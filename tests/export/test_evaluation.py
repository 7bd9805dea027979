"""Nested scoring of the served head and the card's numbers, on synthetic out-of-fold rows."""

from __future__ import annotations

import numpy as np

from export.evaluation import (
    Lags,
    OutOfFold,
    adaptive_coverage,
    adaptive_probabilities,
    classifier_report,
    coverage_report,
    nested_served,
    range_report,
)
from orchestrator.features.head import (
    BASE_RATE,
    BASELINES,
    CHOSEN_SIDE,
    METAMODEL,
    MODEL,
    NETWORKS,
)
from orchestrator.quality.adaptive import ADAPTIVE_RATE, probability_rate

HORIZONS = ["scalping", "intraday"]
LAGS = Lags([1, 1, 1, 1], 1)  # one-bar labels: no overlap between rows


def _out_of_fold(
    rows_per_fold: int = 4000,
    folds: int = 4,
    meta_knows_nothing: bool = False,
    networks_know: bool = False,
    classifier_knows: bool = True,
) -> OutOfFold:
    """Ranges driven by a HAR-like signal the networks do not see (unless `networks_know`: then
    the GRU sees the part of the ranges HAR misses); TP/SL outcomes drawn from known
    probabilities that the raw classifier over-states (or, without `classifier_knows`, ranks
    at chance)."""
    rng = np.random.default_rng(3)
    n = rows_per_fold * folds
    signal = rng.gamma(2.0, 1.0, (n, 4))
    surprise = rng.lognormal(0, 0.3, (n, 4))
    ranges = signal * surprise
    z = rng.normal(0, 1, n)
    p_true = 1 / (1 + np.exp(-z))  # symmetric: long and short trades alike
    long_won = (rng.random(n) < p_true).astype(np.float64)
    short_won = (rng.random(n) < 1 - p_true).astype(np.float64)
    raw_long = 1 / (1 + np.exp(-3 * (z if classifier_knows else rng.normal(0, 1, n))))
    direction = np.where(raw_long >= 0.5, 1.0, -1.0)
    return OutOfFold(
        fold=np.repeat(np.arange(folds), rows_per_fold),
        ts=np.arange(n, dtype=np.int64),
        ranges=ranges,
        gru=ranges * rng.lognormal(0, 0.05, (n, 4))
        if networks_know
        else rng.gamma(2.0, 1.0, (n, 4)),
        transformer=rng.gamma(2.0, 1.0, (n, 4)),
        train_mean=np.full((n, 4), 2.0),
        seasonal=np.full((n, 4), 2.1),
        har=signal,
        log_har=signal * 0.9,
        har_gk=signal * 1.2 + 0.3,
        long_won=long_won,
        short_won=short_won,
        p_long=raw_long,
        p_short=1 - raw_long,
        p_long_har=np.full(n, 0.4),
        p_short_har=np.full(n, 0.6),
        base_long=np.full(n, long_won.mean()),
        base_short=np.full(n, short_won.mean()),
        meta=np.where(
            np.arange(n) < rows_per_fold,
            np.nan,
            rng.random(n)
            if meta_knows_nothing
            else np.where(direction > 0, raw_long, 1 - raw_long),
        ),
        won=np.where(direction > 0, long_won, short_won),
        direction=direction,
    )


def test_the_served_head_is_scored_only_on_folds_after_its_fit() -> None:
    oof = _out_of_fold()
    served = nested_served(oof, LAGS)
    first, second = oof.fold == 0, oof.fold == 1
    assert np.isnan(served.ranges[first]).all()
    assert np.isfinite(served.ranges[~first]).all()
    assert np.isnan(served.confidence[first | second]).all()  # meta scores start at fold 1
    assert np.isfinite(served.confidence[oof.fold >= 2]).all()


def test_the_served_ranges_match_the_best_baseline_when_networks_know_nothing() -> None:
    oof = _out_of_fold()
    report = range_report(oof, nested_served(oof, LAGS), HORIZONS)
    for horizon in HORIZONS:
        entry = report[horizon]
        assert entry["best_baseline"] == "har"
        assert entry["networks_skill"] < -0.5  # the raw networks lose badly
        skill = entry["served_skill"]
        assert abs(skill["mean"]) < 0.02  # served == HAR, within noise
        assert skill["folds"] == 3
        assert skill["low"] <= skill["mean"] <= skill["high"]
        assert entry["scores"]["har"]["qlike"] < entry["scores"]["gru"]["qlike"]


def test_interval_coverage_and_calibration_meet_their_targets_on_exchangeable_rows() -> None:
    oof = _out_of_fold()
    served = nested_served(oof, LAGS)
    coverage = coverage_report(oof, served, HORIZONS)
    assert coverage["within_tolerance"], coverage
    assert abs(coverage["overall"] - 0.8) < 0.02
    probabilities = classifier_report(oof, served)
    for key in ("long", "short", "confidence_chosen_side"):
        entry = probabilities[key]
        assert entry["ece"] <= 0.03, (key, entry["ece"])
        assert entry["brier_skill"] > 0.0  # calibrated probabilities beat the base rate
        raw = next(b for name, b in entry["baselines"].items() if name.endswith("_raw"))
        assert raw["brier_skill"] < entry["brier_skill"]
    # Served after the gate: the base rate on fold 1 (no evidence yet), the model after.
    assert probabilities["confidence"]["ece"] <= 0.03
    assert served.fold_gates[1]["p_long"] == BASE_RATE
    assert served.fold_gates[2]["p_long"] == served.fold_gates[3]["p_long"] == MODEL
    # Where both serve the model (fold 3), the calibrated confidence and the chosen side's
    # P(win) estimate the same event.
    assert served.fold_gates[3]["confidence"] == MODEL
    rows = oof.fold == 3
    chosen = np.where(oof.direction > 0, served.p_long, served.p_short)[rows]
    assert np.abs(served.confidence[rows] - chosen).mean() < 0.03


def test_the_confidence_comes_from_the_chosen_side_when_the_metamodel_knows_nothing() -> None:
    oof = _out_of_fold(meta_knows_nothing=True)
    served = nested_served(oof, LAGS)
    assert served.confidence_source == CHOSEN_SIDE
    probabilities = classifier_report(oof, served)
    assert probabilities["confidence_source"] == CHOSEN_SIDE
    chosen, other = probabilities["confidence_chosen_side"], probabilities["confidence_metamodel"]
    assert chosen["ece"] <= 0.03
    assert chosen["auc"] > 0.6
    assert abs(other["auc"] - 0.5) < 0.03
    assert chosen["log_loss"] < other["log_loss"]
    assert "not chosen" in other["name"]
    assert "— chosen" in chosen["name"]


def test_the_confidence_source_is_the_candidate_with_the_lower_brier_score() -> None:
    oof = _out_of_fold()
    served = nested_served(oof, LAGS)
    scored = np.isfinite(served.confidence)
    losses = {
        name: float(((values[scored] - oof.won[scored]) ** 2).mean())
        for name, values in served.candidates.items()
    }
    assert set(losses) == {METAMODEL, CHOSEN_SIDE}
    assert served.confidence_source == min(losses, key=losses.__getitem__)


def test_the_gate_serves_the_baseline_when_the_networks_know_nothing() -> None:
    oof = _out_of_fold()
    served = nested_served(oof, LAGS)
    gates = served.fold_gates[1]  # nothing shown yet: the baselines' blend of fold 0
    assert [gates[f"column_{j}"] for j in range(4)] == [BASELINES] * 4
    rows = oof.fold == 1
    np.testing.assert_array_equal(served.ranges[rows], served.baseline_blend[rows])
    # HAR drives the ranges: the baselines' blend leans on it and is no worse than HAR alone.
    scored = oof.fold >= 1
    blend_mse = float(((served.baseline_blend[scored] - oof.ranges[scored]) ** 2).mean())
    har_mse = float(((oof.har[scored] - oof.ranges[scored]) ** 2).mean())
    assert blend_mse <= 1.01 * har_mse
    # Later folds: a blend that is HAR plus noise passes a 5 % test about one time in twenty.
    decisions = [served.fold_gates[k][f"column_{j}"] for k in (2, 3) for j in range(4)]
    assert decisions.count(BASELINES) >= 6, decisions


def test_the_gate_serves_the_networks_once_they_have_shown_skill() -> None:
    oof = _out_of_fold(networks_know=True)
    served = nested_served(oof, LAGS)
    first = served.fold_gates[1]
    assert all(first[f"column_{j}"] != NETWORKS for j in range(4))  # no evidence yet
    for k in (2, 3):
        assert all(served.fold_gates[k][f"column_{j}"] == NETWORKS for j in range(4))
    report = range_report(oof, served, HORIZONS)
    for horizon in HORIZONS:
        assert report[horizon]["served_skill"]["mean"] > 0.1


def test_the_gate_serves_the_base_rate_when_the_classifier_ranks_at_chance() -> None:
    oof = _out_of_fold(classifier_knows=False)
    served = nested_served(oof, LAGS)
    for k in (1, 2, 3):
        assert served.fold_gates[k]["p_long"] == BASE_RATE
        assert served.fold_gates[k]["p_short"] == BASE_RATE
    rows = oof.fold >= 1
    np.testing.assert_array_equal(served.p_long[rows], oof.base_long[rows])
    probabilities = classifier_report(oof, served)
    assert abs(probabilities["long"]["brier_skill"]) < 1e-9


def test_adaptive_intervals_hold_coverage_through_a_volatility_shift_in_the_replay() -> None:
    """From fold 2 on every realised range is 1.5 times what HAR says: intervals fitted on the
    folds before under-cover; replayed with adaptive conformal they stay near 80 %."""
    oof = _out_of_fold()
    shifted = oof.fold >= 2
    oof.ranges[shifted] *= 1.5
    served = nested_served(oof, LAGS)
    fixed = coverage_report(oof, served, HORIZONS)
    adaptive = adaptive_coverage(oof, served, LAGS, HORIZONS, ADAPTIVE_RATE)
    assert not fixed["within_tolerance"]
    assert fixed["scalping"]["high"] < 0.7
    assert adaptive["within_tolerance"], adaptive


def test_served_probabilities_follow_a_win_rate_that_drifts_in_the_replay() -> None:
    """The classifier ranks at chance, so the base rate is served; from fold 2 on long trades
    win 25 % of the time instead of about half. The base rate of the folds before misses by
    ~0.2 (ECE far above 0.03); shifted by the outcomes as they resolve (a 2-bar label: the
    shift remembers 400 outcomes, a tenth of a fold), the served P(long) follows the new rate,
    and its Brier score improves."""
    oof = _out_of_fold(classifier_knows=False)
    rng = np.random.default_rng(5)
    drifted = oof.fold >= 2
    oof.long_won[drifted] = (rng.random(int(drifted.sum())) < 0.25).astype(np.float64)
    for k in range(1, 4):  # each fold's base rate: the win rate of the folds before
        oof.base_long[oof.fold == k] = oof.long_won[oof.fold < k].mean()
    lags = Lags([2, 2, 2, 2], 2)
    served = nested_served(oof, lags)
    fixed_ece = classifier_report(oof, served)["long"]["ece"]
    replay = adaptive_probabilities(oof, served, lags, probability_rate(2, 1))
    assert fixed_ece > 0.08
    assert replay["long"]["ece"] <= 0.03, replay["long"]["ece"]
    assert replay["long"]["brier_skill_vs_fixed"] > 0.02
    # Where nothing drifted (short trades) the shift stays small and costs nothing measurable.
    assert replay["short"]["ece"] <= 0.03
    assert abs(replay["short"]["brier_skill_vs_fixed"]) < 0.005
