"""The serving head's arithmetic: what each head field does to the networks' raw outputs."""

from __future__ import annotations

import msgspec
import numpy as np
import pytest

from orchestrator.features.baseline import BASELINE_VERSION, SEASON_CELLS
from orchestrator.features.head import CHOSEN_SIDE, METAMODEL, Calibration, ServingHead, apply_head

W = 2  # one horizon: up, down


def _head(confidence_source: str) -> ServingHead:
    return ServingHead(
        baseline_version=BASELINE_VERSION,
        har_coef=[[1.0, 0, 0, 0, 0]] * W,
        seasonal=[[2.0] * W] * SEASON_CELLS,
        stack=[[0.0, 0.5, 0.0, 0.5, 0.0]] * W,  # half the GRU, half HAR
        interval_level=0.8,
        interval_ratio=[[0.5, 2.0]] * W,
        p_long=Calibration([0.0, 1.0], [0.0, 0.5]),
        p_short=Calibration([0.0, 1.0], [0.0, 0.5]),
        confidence=Calibration([0.0, 1.0], [0.1, 0.3]),
        confidence_source=confidence_source,
    )


def _apply(head: ServingHead) -> tuple[np.ndarray, ...]:
    out = apply_head(
        head,
        gru=np.array([[3.0, 1.0], [5.0, 1.0]], np.float32),
        transformer=np.zeros((2, W), np.float32),
        har=np.zeros((2, 4)),
        season=np.array([0, 1]),
        p_long=np.array([0.8, 0.2], np.float32),
        p_short=np.array([0.4, 0.6], np.float32),
        confidence=np.array([0.0, 1.0], np.float32),
    )
    assert out.intervals is not None
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
