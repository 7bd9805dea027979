"""The versioned feature spec saved with every model version.

Serving recomputes the fingerprint of the pipeline it runs and refuses a model trained with a
different one: a silent mismatch here is training/serving skew, the classic bug of this field.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import msgspec

from orchestrator.errors import ModelsUnavailableError
from orchestrator.features.head import ServingHead
from orchestrator.features.horizons import week_horizon_bars
from orchestrator.features.indicators import FEATURE_NAMES, LOOKBACK_BARS, PARAMS, RETURN_LAGS
from orchestrator.marketdata.sessions import TradingWeek

# Bump when feature code changes meaning without changing names or parameters.
PIPELINE_VERSION = 2  # 2: dmp_dmn is +DI - -DI (was +DM - -DM, in price units)
SEQUENCE_WINDOW = 64
TABULAR_SUMMARY_BARS = 16
CLIP_Z = 5.0
CONTEXT_FEATURES: tuple[str, ...] = ("atr_rel", "adx", "realized_vol", "hour_sin", "hour_cos")


class FeatureSpecMismatchError(ModelsUnavailableError):
    """The served models were trained with other features (503 until they are re-exported)."""


class FeatureSpec(msgspec.Struct, frozen=True):
    pipeline_version: int
    fingerprint: str
    timeframe: str
    window: int
    feature_names: list[str]
    context_features: list[str]
    params: dict[str, float]
    mean: list[float]
    std: list[float]
    clip_z: float
    horizons: list[str]
    horizon_bars: list[int]  # on a market trading around the clock (see symbol_horizon_bars)
    tp_atr: float
    sl_atr: float
    label_horizon: str
    head: ServingHead | None = None  # absent in models exported before the serving head
    # True: each symbol's labels counted its own sessions (features/horizons.py); False (sets
    # trained before): every symbol's labels read horizon_bars.
    horizons_in_sessions: bool = False

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def n_ranges(self) -> int:
        """Range-model outputs: [up, down] per horizon."""
        return 2 * len(self.horizons)

    def symbol_horizon_bars(self, week: TradingWeek | None) -> list[int]:
        """Bars of each horizon for a symbol trading in `week`, as its labels counted them."""
        if self.horizons_in_sessions:
            return week_horizon_bars(week) or list(self.horizon_bars)
        return list(self.horizon_bars)

    def dumps(self) -> bytes:
        return msgspec.json.format(msgspec.json.encode(self), indent=2)

    @classmethod
    def load(cls, path: Path) -> FeatureSpec:
        return msgspec.json.decode(path.read_bytes(), type=cls)


def pipeline_fingerprint(timeframe: str) -> str:
    """Hash of everything that defines a feature value; equal hashes mean equal features."""
    definition = {
        "version": PIPELINE_VERSION,
        "names": FEATURE_NAMES,
        "params": PARAMS,
        "lags": RETURN_LAGS,
        "lookback": LOOKBACK_BARS,
        "window": SEQUENCE_WINDOW,
        "summary": TABULAR_SUMMARY_BARS,
        "clip": CLIP_Z,
        "context": CONTEXT_FEATURES,
        "timeframe": timeframe,
    }
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode()).hexdigest()[:16]


def check_compatible(spec: FeatureSpec, model: str) -> None:
    """Raises with what differs when `spec` was produced by another pipeline definition."""
    expected = pipeline_fingerprint(spec.timeframe)
    if spec.fingerprint == expected:
        if spec.head is not None:
            try:
                spec.head.check(spec.n_ranges)
            except ValueError as exc:
                raise FeatureSpecMismatchError(f"model {model}: {exc}") from exc
        return
    problems = []
    if spec.pipeline_version != PIPELINE_VERSION:
        problems.append(f"pipeline version {spec.pipeline_version} != {PIPELINE_VERSION}")
    if tuple(spec.feature_names) != FEATURE_NAMES:
        missing = sorted(set(FEATURE_NAMES) - set(spec.feature_names))
        extra = sorted(set(spec.feature_names) - set(FEATURE_NAMES))
        problems.append(f"feature names differ (missing {missing}, extra {extra})")
    if {k: float(v) for k, v in PARAMS.items()} != spec.params:
        problems.append("indicator parameters differ")
    if spec.window != SEQUENCE_WINDOW:
        problems.append(f"window {spec.window} != {SEQUENCE_WINDOW}")
    detail = "; ".join(problems) or "definition changed"
    raise FeatureSpecMismatchError(
        f"model {model} was trained with feature pipeline {spec.fingerprint}, this server runs "
        f"{expected} ({detail}); retrain and export it with `make models`"
    )
