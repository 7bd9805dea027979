"""The serving path: bars -> features (shared pipeline) -> one Triton ensemble request.

The feature spec (normalisation statistics included) is read from the ensemble's config through
Triton's API and checked against the running pipeline, once per served version.

Triton may hold several versions of an ensemble ready (the champion, the previous champion on
standby for a rollback, a challenger scored in shadow). The one served is named by the config's
`serving_version` parameter (the lifecycle sets it when it loads more than one); when that
version is not ready (a rollback dropped it), the newest ready version that is not the
`challenger_version`; with one version, that one. A promotion also names the first bar the
new version answers (`serving_from`); the bars before it are answered by `previous_version`
(Serving.for_bar), so two replicas never answer one bar with two versions. Every request names
its version, so a request never reaches a version that is not served. Each version's spec is
the config's `feature_spec_<version>` parameter, else `feature_spec`.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import msgspec
import numpy as np
import tritonclient.grpc.aio as grpc_aio
from tritonclient.utils import InferenceServerException

from orchestrator.errors import ModelsUnavailableError
from orchestrator.features.dataset import F32
from orchestrator.features.online import ModelInputs
from orchestrator.features.spec import FeatureSpec, check_compatible
from orchestrator.inference.calls import uncancelled
from orchestrator.inference.input_regions import InputRegions, Region, lost_region
from orchestrator.inference.models import (
    CHALLENGER_VERSION_PARAMETER,
    ENSEMBLE,
    FEATURE_SPEC_PARAMETER,
    PREVIOUS_VERSION_PARAMETER,
    SERVING_FROM_PARAMETER,
    SERVING_VERSION_PARAMETER,
    check_config_fingerprint,
)


class ModelServiceUnavailableError(ModelsUnavailableError):
    """Triton cannot answer (down, model not loaded, deadline exceeded; the API answers 503)."""


@dataclass(frozen=True)
class EnsembleOutput:
    gru_range: F32  # (N, 8) ATR units, [up, down] per horizon
    transformer_range: F32
    p_long: F32  # (N,) P(long trade wins)
    p_short: F32
    confidence: F32  # (N,) P(the chosen trade wins)
    direction: F32  # (N,) +1 long, -1 short
    model_version: str

    def row(self, index: int) -> EnsembleOutput:
        """Row `index` of a batched answer, as a batch of one (views, no copies)."""
        window = slice(index, index + 1)
        return EnsembleOutput(
            self.gru_range[window],
            self.transformer_range[window],
            self.p_long[window],
            self.p_short[window],
            self.confidence[window],
            self.direction[window],
            self.model_version,
        )


@dataclass(frozen=True)
class Serving:
    """Which version answers which bar. A promotion names the first bar the new version serves
    (`serving_from`, the lifecycle sets it): a bar that opened before it is answered by the
    version it replaced (`previous_version`, kept loaded on standby), so every replica answers
    every bar with the same version whenever it computes it."""

    version: str
    previous: str | None = None
    first_bar: datetime | None = None

    def for_bar(self, bar_time: datetime) -> str:
        if self.previous is None or self.first_bar is None or bar_time >= self.first_bar:
            return self.version
        return self.previous


class SignalModels:
    """One aio gRPC client per process (created in the lifespan), with deadlines."""

    def __init__(
        self,
        client: grpc_aio.InferenceServerClient,
        timeout_s: float,
        ensemble: str = ENSEMBLE,
        version: str | None = None,
        input_regions: InputRegions | None = None,
    ) -> None:
        """`version`: always this version (a challenger scored in shadow); None: the served
        one. `input_regions`: the process's shared-memory regions for request inputs (None:
        inputs go inside the message)."""
        self.client = client
        self.input_regions = input_regions
        self.timeout_s = timeout_s
        self.ensemble = ensemble
        self.pinned = version
        self._specs: dict[str, FeatureSpec] = {}
        self._lock = asyncio.Lock()
        self._version_lock = asyncio.Lock()
        self._serving: Serving | None = None
        self._serving_at = 0.0
        self._ready: tuple[str, ...] = ()

    @property
    def _version(self) -> str | None:
        return None if self._serving is None else self._serving.version

    async def _config(self) -> dict[str, Any]:
        try:
            response = await self.client.get_model_config(
                self.ensemble, as_json=True, client_timeout=self.timeout_s
            )
        except InferenceServerException as exc:
            raise ModelServiceUnavailableError(_describe(exc)) from exc
        config: dict[str, Any] = response["config"]
        return config

    async def _parameters(self) -> dict[str, str]:
        """The config's string parameters, from the protobuf answer (no JSON round trip: read
        every second while several versions are ready)."""
        try:
            response = await self.client.get_model_config(
                self.ensemble, client_timeout=self.timeout_s
            )
        except InferenceServerException as exc:
            raise ModelServiceUnavailableError(_describe(exc)) from exc
        return {key: value.string_value for key, value in response.config.parameters.items()}

    async def spec(self, version: str | None = None) -> FeatureSpec:
        """The feature spec of `version` (None: the served one)."""
        version = version or await self.served_version()
        found = self._specs.get(version)
        if found is not None:
            return found
        async with self._lock:
            if version not in self._specs:
                config = await self._config()
                check_config_fingerprint(config, self.ensemble)
                parameters = config.get("parameters", {})
                own = parameters.get(f"{FEATURE_SPEC_PARAMETER}_{version}", {})
                raw = own.get("string_value") or parameters.get(FEATURE_SPEC_PARAMETER, {}).get(
                    "string_value"
                )
                if not raw:
                    raise ModelServiceUnavailableError(
                        f"{self.ensemble} carries no feature spec; re-export it with `make models`"
                    )
                spec = msgspec.json.decode(raw, type=FeatureSpec)
                check_compatible(spec, self.ensemble)
                self._specs[version] = spec
            return self._specs[version]

    async def served_version(self) -> str:
        """The version served now (or the pinned one)."""
        return (await self.serving()).version

    async def version_for(self, bar_time: datetime) -> str:
        """The version that answers the bar opening at `bar_time`."""
        return (await self.serving()).for_bar(bar_time)

    async def serving(self) -> Serving:
        """What serves, re-read at most once a second; concurrent requests that find it stale
        share one read. With one version ready, that one; with several, the config decides."""
        if self._serving is not None and self._loop_time() - self._serving_at < 1.0:
            return self._serving
        async with self._version_lock:
            now = self._loop_time()
            if self._serving is not None and now - self._serving_at < 1.0:
                return self._serving
            try:
                metadata = await self.client.get_model_metadata(
                    self.ensemble, as_json=True, client_timeout=self.timeout_s
                )
            except InferenceServerException as exc:
                raise ModelServiceUnavailableError(_describe(exc)) from exc
            ready = tuple(sorted(metadata.get("versions", ["0"]), key=int))
            if ready != self._ready:
                self._specs.clear()  # a version dropped and exported again may differ
            self._serving, self._serving_at, self._ready = await self._choose(ready), now, ready
            return self._serving

    async def _choose(self, ready: tuple[str, ...]) -> Serving:
        if self.pinned is not None:
            if self.pinned not in ready:
                raise ModelServiceUnavailableError(
                    f"{self.ensemble} v{self.pinned} is not loaded in Triton (ready: "
                    f"{', '.join(ready) or 'none'})"
                )
            return Serving(self.pinned)
        if len(ready) == 1:
            return Serving(ready[0])
        # Several ready: a switch may have changed which serves without changing which are
        # ready (a challenger promoted, the champion kept on standby), so read the config.
        parameters = await self._parameters()
        named = parameters.get(SERVING_VERSION_PARAMETER)
        if named not in ready:
            # The served version was dropped (a rollback that only narrowed the version
            # policy): the newest version kept that is not in shadow.
            shadow = parameters.get(CHALLENGER_VERSION_PARAMETER)
            kept = [v for v in ready if v != shadow] or list(ready)
            return Serving(max(kept, key=int))
        previous = parameters.get(PREVIOUS_VERSION_PARAMETER)
        first_bar = parameters.get(SERVING_FROM_PARAMETER)
        if previous not in ready or not first_bar:
            return Serving(str(named))
        return Serving(str(named), previous, datetime.fromisoformat(first_bar))

    async def absent(self) -> bool:
        """Whether Triton answers and its model index has no version of this set ready or
        loading: the timeframe is not served (a 404), rather than served and not answering for
        a moment (a restart, a reload, a channel still reconnecting: a 503)."""
        try:
            index = await self.client.get_model_repository_index(
                as_json=True, client_timeout=self.timeout_s
            )
        except InferenceServerException:
            return False
        return not any(
            entry.get("name") == self.ensemble and entry.get("state") in ("READY", "LOADING")
            for entry in index.get("models", [])
        )

    @staticmethod
    def _loop_time() -> float:
        return asyncio.get_running_loop().time()

    async def _infer(
        self, tensors: list[grpc_aio.InferInput], version: str, region: Region | None = None
    ) -> Any:
        call = self.client.infer(
            self.ensemble, tensors, model_version=version, client_timeout=self.timeout_s
        )
        if region is not None and self.input_regions is not None:
            # Given back when the call ends, not when its caller stops waiting (calls.py).
            call = self.input_regions.holding(region, call)
        return await uncancelled(self.client, call)

    async def infer(self, inputs: list[ModelInputs], version: str | None = None) -> EnsembleOutput:
        """One request for `inputs`, answered by `version` (None: the served one)."""
        return await self.infer_arrays(
            np.concatenate([i.seq for i in inputs]),
            np.concatenate([i.tab for i in inputs]),
            np.concatenate([i.ctx for i in inputs]),
            version,
        )

    async def infer_arrays(
        self,
        seq: F32,
        tab: F32,
        ctx: F32,
        version: str | None = None,
        *,
        by_message: bool = False,
    ) -> EnsembleOutput:
        """infer() of inputs already in batch arrays (a sweep's chunk, batch_inputs.py); through
        shared memory where the process has input regions, unless `by_message`."""
        arrays = (("SEQ", seq), ("TAB", tab), ("CTX", ctx))
        regions = None if by_message else self.input_regions
        taken = None if regions is None else await regions.take(arrays)
        if taken is None:
            tensors, region = _message_inputs(arrays), None
        else:
            tensors, region = taken
        asked = version or self._version
        try:
            result = await self._infer(tensors, asked or "", region)
        except InferenceServerException as exc:
            if region is not None and regions is not None and lost_region(exc):
                # Triton restarted since the region was registered: this request once more
                # by message; the next ones register the regions again.
                regions.forget_registrations()
                return await self.infer_arrays(seq, tab, ctx, version, by_message=True)
            if self.pinned is not None or asked is None:
                raise ModelServiceUnavailableError(_describe(exc)) from exc
            # The version asked for may have been switched out in the last second: ask Triton
            # which serves now and try once more (the answer names the version that computed
            # it, so a caller holding inputs for the old one computes again).
            self._serving_at = float("-inf")
            served = await self.served_version()
            if served == asked or asked in self._ready:
                raise ModelServiceUnavailableError(_describe(exc)) from exc
            try:
                result = await self._infer(_message_inputs(arrays), served)
            except InferenceServerException as again:
                raise ModelServiceUnavailableError(_describe(again)) from again
        return EnsembleOutput(
            gru_range=result.as_numpy("GRU_RANGE"),
            transformer_range=result.as_numpy("TF_RANGE"),
            p_long=result.as_numpy("P_LONG")[:, 1],
            p_short=result.as_numpy("P_SHORT")[:, 1],
            confidence=result.as_numpy("CONFIDENCE")[:, 0],
            direction=result.as_numpy("DIRECTION")[:, 0],
            model_version=result.get_response().model_version,
        )


def _message_inputs(arrays: tuple[tuple[str, F32], ...]) -> list[grpc_aio.InferInput]:
    """The inputs inside the gRPC message."""
    tensors = []
    for name, array in arrays:
        tensor = grpc_aio.InferInput(name, list(array.shape), "FP32")
        tensor.set_data_from_numpy(array)
        tensors.append(tensor)
    return tensors


def _describe(exc: InferenceServerException) -> str:
    return (
        f"Triton did not answer: {exc.message() or exc}; check that it runs (`make triton`) and "
        "that TRITON_HOST/TRITON_GRPC_PORT point at it"
    )
