"""Served model names (shared with export/catalog.py) and the served-spec check.

Every exported config.pbtxt carries the feature pipeline's fingerprint as a model parameter, so
the orchestrator verifies compatibility through Triton's API, wherever the repository lives.
"""

from __future__ import annotations

import asyncio
from typing import Any

import tritonclient.grpc.aio as grpc_aio

from orchestrator.features.spec import FeatureSpecMismatchError, pipeline_fingerprint

GRU = "range_gru"
TRANSFORMER = "range_transformer"
XGB_LONG = "tpsl_xgb_long"
XGB_SHORT = "tpsl_xgb_short"
META = "signal_metamodel"
ENSEMBLE = "signal_ensemble"
FEATURE_MODELS = (GRU, TRANSFORMER, XGB_LONG, XGB_SHORT, META, ENSEMBLE)
# The 5m set keeps the plain names; a set trained on another timeframe carries it as a suffix
# (signal_ensemble_15m, range_gru_1h, ...), so one Triton serves every timeframe side by side.
BASE_TIMEFRAME = "5m"
SERVED_TIMEFRAMES = ("5m", "15m", "1h", "1d")


FEATURE_SPEC_PARAMETER = "feature_spec"  # and feature_spec_<version> beside it (client.py)
SERVING_VERSION_PARAMETER = "serving_version"  # which ready version serves (client.py)
CHALLENGER_VERSION_PARAMETER = "challenger_version"  # the one scored in shadow, never served
# A promotion's bar boundary: bars opening before `serving_from` (RFC 3339) are answered by
# `previous_version` (client.py: Serving).
PREVIOUS_VERSION_PARAMETER = "previous_version"
SERVING_FROM_PARAMETER = "serving_from"


def config_parameter(key: str, value: str) -> str:
    """One `parameters` line of a config.pbtxt (the value escaped as a protobuf string)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'parameters {{ key: "{key}" value: {{ string_value: "{escaped}" }} }}'


def served_name(model: str, timeframe: str) -> str:
    return model if timeframe == BASE_TIMEFRAME else f"{model}_{timeframe}"


def feature_models(timeframe: str) -> tuple[str, ...]:
    return tuple(served_name(m, timeframe) for m in FEATURE_MODELS)


def check_config_fingerprint(config: dict[str, Any], model: str) -> str:
    """Returns the timeframe the model was trained for; raises when its features differ."""
    params = config.get("parameters", {})
    fingerprint = params.get("feature_fingerprint", {}).get("string_value")
    timeframe = params.get("feature_timeframe", {}).get("string_value")
    if not fingerprint or not timeframe:
        raise FeatureSpecMismatchError(
            f"model {model} carries no feature fingerprint in its config; re-export it with "
            "`make models`"
        )
    expected = pipeline_fingerprint(timeframe)
    if fingerprint != expected:
        raise FeatureSpecMismatchError(
            f"model {model} was trained with feature pipeline {fingerprint}, this server runs "
            f"{expected}; retrain and export it with `make models`"
        )
    return str(timeframe)


async def verify_served_models(
    client: grpc_aio.InferenceServerClient,
    models: tuple[str, ...] = FEATURE_MODELS,
    timeout_s: float = 5.0,
) -> dict[str, str]:
    """{model: timeframe} for every served model; raises on the first incompatible one."""
    responses = await asyncio.gather(
        *(client.get_model_config(m, as_json=True, client_timeout=timeout_s) for m in models)
    )
    return {
        model: check_config_fingerprint(response["config"], model)
        for model, response in zip(models, responses, strict=True)
    }
