"""The serving head's arithmetic: what each head field does to the networks' raw outputs."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from orchestrator.features.baseline import BASELINE_VERSION, SEASON_CELLS
from orchestrator.features.head import (
    CHOSEN_SIDE,
    INTERVAL_GRID,
    LOG_HAR_OFFSET_ATR,
    METAMODEL,
    NETWORKS,
    PROBABILITY_FLOOR,
    STACK_INPUTS,
    Calibration,
    OnlineLevels,
    ServingHead,
    apply_head,
    interval_ratios,
)

W = 2  # one horizon: up, down


def _head(confidence_source: str) -> ServingHead:
    return ServingHead(
        baseline_version=BASELINE_VERSION,
        har_coef=[[1.0, 0, 0, 0, 0]] * W,
        # log-HAR: exp(log 3) x smear 1 - offset; HAR-GK: 0.5 + 1 x the first GK level.
        log_har_coef=[[float(np.log(3.0 + LOG_HAR_OFFSET_ATR)), 0, 0, 0, 0, 0, 0]] * W,
        log_har_smear=[1.0] * W,
        gk_coef=[[0.5, 1.0, 0, 0, 0]] * W,
        seasonal=[[2.0] * W] * SEASON_CELLS,
        train_mean=[1.5] * W,
        stack=[[0.0, 0.5, 0.0, 0.5, 0.0, 0.0, 0.0]] * W,  # half the GRU, half HAR
        served=[NETWORKS] * W,
        reference=["har", "log_har"],
        interval_level=0.8,
        interval_ratio=[[0.5, 2.0]] * W,
        p_long=Calibration([0.0, 1.0], [0.0, 0.5]),
        p_short=Calibration([0.0, 1.0], [0.0, 0.5]),
        confidence=Calibration([0.0, 1.0], [0.1, 0.3]),
        confidence_source=confidence_source,
    )


def _apply(head: ServingHead, levels: OnlineLevels | None = None) -> tuple[np.ndarray, ...]:
    out = apply_head(
        head,
        gru=np.array([[3.0, 1.0], [5.0, 1.0]], np.float32),
        transformer=np.zeros((2, W), np.float32),
        baseline=np.column_stack([np.zeros((2, 4)), np.full((2, 4), 2.0), np.zeros((2, 2))]),
        season=np.array([0, 1]),
        p_long=np.array([0.8, 0.2], np.float32),
        p_short=np.array([0.4, 0.6], np.float32),
        confidence=np.array([0.0, 1.0], np.float32),
        levels=levels,
    )
    assert out.intervals is not None
    assert out.baseline is not None
    np.testing.assert_allclose(out.baseline, [[1.0, 3.0], [1.0, 3.0]])  # the reference columns
    return out.ranges, out.intervals, out.p_long, out.confidence


def test_ranges_intervals_and_probabilities_follow_the_head() -> None:
    ranges, intervals, p_long, confidence = _apply(_head(METAMODEL))
    np.testing.assert_allclose(ranges, [[2.0, 1.0], [3.0, 1.0]])
    np.testing.assert_allclose(intervals[1, 0], [1.5, 6.0])
    np.testing.assert_allclose(p_long, [0.4, 0.1])
    np.testing.assert_allclose(confidence, [0.1, 0.3])  # the metamodel's 0 and 1, mapped


def test_a_chosen_side_confidence_maps_the_larger_classifier_probability() -> None:
    *_, confidence = _apply(_head(CHOSEN_SIDE))
    np.testing.assert_allclose(confidence, [0.1 + 0.2 * 0.8, 0.1 + 0.2 * 0.6])


def test_a_head_with_an_unknown_confidence_source_is_refused() -> None:
    head = msgspec.structs.replace(_head(METAMODEL), confidence_source="vibes")
    with pytest.raises(ValueError, match="confidence_source 'vibes'"):
        head.check(W)


@pytest.mark.parametrize(
    ("source", "expected"), [("har", 1.0), ("log_har", 3.0), ("har_gk", 2.5), ("seasonal", 2.0)]
)
def test_a_column_the_gate_gave_to_a_baseline_serves_that_baseline(
    source: str, expected: float
) -> None:
    weights = [0.0] * len(STACK_INPUTS)
    weights[STACK_INPUTS.index(source)] = 1.0
    head = msgspec.structs.replace(_head(METAMODEL), stack=[weights] * W, served=[source] * W)
    head.check(W)
    ranges, *_ = _apply(head)
    np.testing.assert_allclose(ranges, expected)


def test_a_constant_calibration_serves_the_base_rate_whatever_the_model_says() -> None:
    head = msgspec.structs.replace(_head(METAMODEL), p_long=Calibration.constant(0.37))
    _, _, p_long, _ = _apply(head)
    np.testing.assert_allclose(p_long, [0.37, 0.37])


def test_live_outcomes_shift_each_probability_within_its_floor() -> None:
    head = msgspec.structs.replace(_head(METAMODEL), p_long=Calibration.constant(0.37))
    levels = OnlineLevels(probability_shift=np.array([-0.1, 0.0, -0.5]))
    _, intervals, p_long, confidence = _apply(head, levels)
    np.testing.assert_allclose(p_long, [0.27, 0.27])
    np.testing.assert_allclose(confidence, [PROBABILITY_FLOOR, PROBABILITY_FLOOR])
    np.testing.assert_allclose(intervals, _apply(head)[1])  # no miscoverage: the fitted 80 %


def test_a_head_serving_an_unknown_source_is_refused() -> None:
    head = msgspec.structs.replace(_head(METAMODEL), served=["vibes", NETWORKS])
    with pytest.raises(ValueError, match="unknown range sources"):
        head.check(W)


def test_adaptive_levels_move_the_fitted_interval_by_the_quantile_table() -> None:
    grid = np.asarray(INTERVAL_GRID)
    table = [list(0.2 + 1.6 * grid)] * W  # ratio quantiles: linear from 0.2 to 1.8
    head = msgspec.structs.replace(
        _head(METAMODEL),
        interval_quantiles=table,
        interval_floor=[False, True],
        adaptive_rate=0.005,
    )
    head.check(W)
    np.testing.assert_allclose(interval_ratios(head, [0.2, 0.2]), head.interval_ratio)
    wider = interval_ratios(head, [0.1, 0.1])  # missed too often: a 90 % interval
    np.testing.assert_allclose(wider[0], [0.5 - 1.6 * 0.05, 2.0 + 1.6 * 0.05])
    np.testing.assert_allclose(wider[1], [0.5, 2.0 + 1.6 * 0.1])  # starts at 0: upper moves
