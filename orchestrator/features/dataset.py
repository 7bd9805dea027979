"""Normalisation and model inputs (sequence windows, tabular vectors, context) from features.

Used unchanged by training (export/) and serving, so both see identical tensors.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd

from orchestrator.features.indicators import FEATURE_NAMES
from orchestrator.features.spec import (
    CONTEXT_FEATURES,
    SEQUENCE_WINDOW,
    TABULAR_SUMMARY_BARS,
    FeatureSpec,
)

F32 = npt.NDArray[np.float32]


def fit_normalisation(features: pd.DataFrame) -> tuple[list[float], list[float]]:
    """Mean and std per feature from training rows only."""
    values = features[list(FEATURE_NAMES)].to_numpy(np.float64)
    mean = np.nanmean(values, axis=0)
    std = np.nanstd(values, axis=0)
    std = np.where(std < 1e-12, 1.0, std)
    return mean.tolist(), std.tolist()


def normalise(features: pd.DataFrame, spec: FeatureSpec) -> F32:
    values = features[list(spec.feature_names)].to_numpy(np.float64)
    z = (values - np.asarray(spec.mean)) / np.asarray(spec.std)
    return np.asarray(np.clip(z, -spec.clip_z, spec.clip_z), dtype=np.float32)


def valid_ends(normalised: F32, window: int = SEQUENCE_WINDOW) -> npt.NDArray[np.bool_]:
    """True at row t when the window ending at t has no missing value."""
    finite = np.isfinite(normalised).all(axis=1).astype(np.int64)
    run = np.convolve(finite, np.ones(window, dtype=np.int64), mode="full")[: finite.size]
    return np.asarray(run == window, dtype=np.bool_)


def sequence_windows(
    normalised: F32, ends: npt.NDArray[np.int64], window: int = SEQUENCE_WINDOW
) -> F32:
    """(N, window, F): rows ends-window+1 .. ends."""
    view = np.lib.stride_tricks.sliding_window_view(normalised, window, axis=0)  # (T-w+1, F, w)
    return np.ascontiguousarray(view[ends - window + 1].transpose(0, 2, 1))


def tabular_vectors(normalised: F32, ends: npt.NDArray[np.int64]) -> F32:
    """(N, 2F): the feature row at t and the mean of the last TABULAR_SUMMARY_BARS rows."""
    # Warm-up NaNs would poison a running sum; valid windows never contain them, so zero them.
    filled = np.nan_to_num(normalised.astype(np.float64), nan=0.0)
    cumulative = np.vstack([np.zeros((1, normalised.shape[1])), np.cumsum(filled, axis=0)])
    k = TABULAR_SUMMARY_BARS
    means = (cumulative[ends + 1] - cumulative[ends + 1 - k]) / k
    return np.hstack([normalised[ends], means]).astype(np.float32)


def context_vectors(normalised: F32, ends: npt.NDArray[np.int64]) -> F32:
    """Regime context for the metamodel."""
    columns = [FEATURE_NAMES.index(name) for name in CONTEXT_FEATURES]
    return np.ascontiguousarray(normalised[ends][:, columns])
