"""Custom barriers asked together are evaluated together, with the answers each gets alone."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from orchestrator.features.barriers import BROWNIAN, FALLBACK, MODEL, PathShape
from orchestrator.signals.barrier_batch import BarrierBatcher
from orchestrator.signals.barriers import Barrier, BarrierPath, BarrierQuestion, evaluate


def _question(rng: np.random.Generator, shape: PathShape) -> BarrierQuestion:
    side = "long" if rng.random() < 0.5 else "short"
    barrier = Barrier(side, 1, float(rng.uniform(0.2, 4)), float(rng.uniform(0.2, 3)))
    path = BarrierPath(
        drift=np.array([rng.normal(0, 0.5)]),
        scale=np.array([rng.uniform(0.3, 4)]),
        shape=shape,
        answered_by=FALLBACK if shape == BROWNIAN else MODEL,
        reason="test",
    )
    return BarrierQuestion(barrier, path, "intraday", int(rng.integers(1, 300)), 100.0, 2.0, 0.05)


async def test_questions_of_one_turn_share_an_evaluation_per_shape() -> None:
    rng = np.random.default_rng(7)
    shapes = [BROWNIAN, PathShape(0.4)]
    questions = [_question(rng, shapes[i % 2]) for i in range(24)]
    batcher = BarrierBatcher()
    answers = await asyncio.gather(*(batcher.outcome(q) for q in questions))
    assert batcher.questions == 24
    assert batcher.batches == 2  # one per path shape
    for question, got in zip(questions, answers, strict=True):
        alone = evaluate(question)
        assert got.answered_by == question.path.answered_by
        for field in ("p_tp_first", "p_sl_first", "p_neither", "expected_bars", "expected_r"):
            assert getattr(got, field) == pytest.approx(getattr(alone, field), abs=1e-12)
        assert got.p_tp_first + got.p_sl_first + got.p_neither == pytest.approx(1.0, abs=1e-12)


async def test_a_lone_question_is_answered_and_later_turns_batch_again() -> None:
    rng = np.random.default_rng(8)
    batcher = BarrierBatcher()
    first = await batcher.outcome(_question(rng, BROWNIAN))
    second = await batcher.outcome(_question(rng, BROWNIAN))
    assert 0 <= first.p_tp_first <= 1
    assert 0 <= second.p_tp_first <= 1
    assert (batcher.questions, batcher.batches) == (2, 2)


async def test_a_failing_evaluation_reaches_every_waiter_and_spares_other_shapes() -> None:
    rng = np.random.default_rng(9)
    good = _question(rng, BROWNIAN)
    broken = _question(rng, PathShape(0.3))
    path = broken.path._replace(drift=np.zeros(3), scale=np.ones(2))  # shapes that do not fit
    broken = broken._replace(path=path)
    batcher = BarrierBatcher()
    results = await asyncio.gather(
        batcher.outcome(good), batcher.outcome(broken), return_exceptions=True
    )
    assert not isinstance(results[0], BaseException)
    assert results[0].p_tp_first == pytest.approx(evaluate(good).p_tp_first, abs=1e-12)
    assert isinstance(results[1], ValueError)
