"""The bar-close counters say why a key went unanswered (too young, Triton, the database), and
the serving head applied to many predictions at once equals it applied to each."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import numpy as np
from asyncmy.errors import OperationalError

from orchestrator.features.online import NotEnoughHistoryError
from orchestrator.features.spec import FeatureSpec
from orchestrator.inference.client import EnsembleOutput, ModelServiceUnavailableError
from orchestrator.inference.prediction import BarCloseStats, serve_together
from orchestrator.inference.shared import SharedPrediction
from orchestrator.settings import PROJECT_ROOT

ENSEMBLE_DIR = PROJECT_ROOT / "model_repository" / "cpu" / "signal_ensemble"
# The committed demo set's newest version (one is committed; a retrain replaces it).
SPEC = max(ENSEMBLE_DIR.glob("[0-9]*/feature_spec.json"), key=lambda p: int(p.parent.name))


def test_failures_are_counted_by_cause() -> None:
    stats = BarCloseStats()
    for failure in (
        NotEnoughHistoryError(10, 664),
        NotEnoughHistoryError(600, 664),
        ModelServiceUnavailableError("Triton at localhost:8001 is not reachable"),
        OperationalError(2013, "Lost connection to server during query"),
        ConnectionRefusedError(111, "refused"),
        ValueError("bar at 2025-06-02 has a non-finite value"),
    ):
        stats.count_failure(failure)
    assert stats.not_enough_history == 2
    assert stats.errors == 4  # young symbols are not errors
    assert stats.triton_failures == 1
    assert stats.database_failures == 2


def test_predictions_served_together_equal_those_served_one_by_one() -> None:
    """A replica applies the serving head to the predictions another replica shared in one batch
    per spec, version and online levels (interval level, probability shift); each row equals the
    head applied to it alone, the shift carried from the computing replica."""
    spec = FeatureSpec.load(SPEC)
    assert spec.head is not None
    width = 2 * len(spec.horizons)
    rng = np.random.default_rng(7)
    levels = [None, [0.25] * width]
    shifts = [None, [0.02, -0.03, 0.0], [-0.01, 0.0, 0.04]]

    def shared(k: int) -> SharedPrediction:
        return SharedPrediction(
            f"S{k:02d}USD", "5m", datetime(2026, 1, 2, 10, 5, tzinfo=UTC), "8", 100.0, 1.5,
            (rng.random(width) * 3).tolist(), (rng.random(width) * 3).tolist(),
            *rng.random(3).tolist(), 1.0, 0,
            (rng.normal(size=10) * 0.3).tolist(), int(rng.integers(0, 288)),
            levels[k % 2], None, shifts[k % 3],
        )  # fmt: skip

    records = [shared(k) for k in range(9)]
    together = [r.prediction(spec) for r in records]
    serve_together(together)
    for record, prediction in zip(records, together, strict=True):
        alone = record.prediction(spec).served
        served = prediction.served
        for name in ("ranges", "intervals", "baseline", "p_long", "p_short", "confidence"):
            np.testing.assert_allclose(getattr(served, name), getattr(alone, name), rtol=1e-12)
        shift = shifts[records.index(record) % 3]
        if shift is not None:
            unshifted = msgspec.structs.replace(record, probability_shift=None)
            base = unshifted.prediction(spec).served
            np.testing.assert_allclose(served.p_long - base.p_long, shift[0], atol=1e-9)
            np.testing.assert_allclose(served.confidence - base.confidence, shift[2], atol=1e-9)


def test_shared_records_built_for_a_whole_chunk_equal_those_built_one_by_one() -> None:
    """A sweep lists each batched array once for its chunk (SharedPrediction.of_rows); every
    record must equal what of() builds from that prediction alone."""
    spec = FeatureSpec.load(SPEC)
    width = 2 * len(spec.horizons)
    rng = np.random.default_rng(11)

    def record(k: int) -> SharedPrediction:
        return SharedPrediction(
            f"S{k:02d}USD", "5m", datetime(2026, 1, 2, 10, 5, tzinfo=UTC), "8", 100.0 + k, 1.5,
            (rng.random(width) * 3).tolist(), (rng.random(width) * 3).tolist(),
            *rng.random(3).tolist(), float(rng.choice([-1.0, 1.0])), k,
            (rng.normal(size=10) * 0.3).tolist(), int(rng.integers(0, 168)),
            [0.25] * width if k % 2 else None, [40 + k, 50], [0.02, -0.03, 0.0] if k % 3 else None,
        )  # fmt: skip

    records = [record(k) for k in range(7)]
    predictions = [record.prediction(spec) for record in records]
    rows = [p.out for p in predictions]
    batched = EnsembleOutput(
        *(np.concatenate([getattr(o, name) for o in rows]) for name in _OUTPUTS),
        model_version="8",
    )
    har = np.concatenate([p.inputs.har for p in predictions])
    season = np.concatenate([p.inputs.season for p in predictions])
    together = SharedPrediction.of_rows(predictions, batched, har, season, {})
    alone = [
        SharedPrediction.of_rows([p], p.out, p.inputs.har, p.inputs.season, {})[0]
        for p in predictions
    ]
    assert together == alone


_OUTPUTS = ("gru_range", "transformer_range", "p_long", "p_short", "confidence", "direction")
