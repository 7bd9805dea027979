"""Promotion and rollback: Triton and the registry changed together, or neither.

Order: check the move against the registry, switch Triton (the old version serves until the new
one is ready, and keeps serving when its load fails), then record the move in one transaction.
When recording fails (the database went away, another admin moved the set meanwhile), Triton is
switched back to the version that served before, so what serves is what the registry says.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import tritonclient.grpc.aio as grpcclient

from orchestrator.lifecycle.registry import ModelRegistry, ModelVersion, checked_move
from orchestrator.lifecycle.switch import pin_in_repository, serve_version, version_spec


class Lifecycle:
    def __init__(
        self,
        registry: ModelRegistry,
        triton: grpcclient.InferenceServerClient,
        repository: Path,
        timeout_s: float,
    ) -> None:
        self.registry = registry
        self.triton = triton
        self.repository = repository
        self.timeout_s = timeout_s

    async def promote(self, model_set: str, version: int, actor: str, reason: str) -> ModelVersion:
        """`version` serves from now on (forced: no promotion test; the reason is recorded)."""
        return await self._switch(
            model_set,
            version,
            lambda: self.registry.move(model_set, version, "champion", actor, reason),
        )

    async def rollback(self, model_set: str, actor: str, reason: str) -> ModelVersion:
        """The previous champion serves again."""
        target = await self.registry.rollback_target(model_set)
        return await self._switch(
            model_set, target, lambda: self.registry.rollback(model_set, actor, reason, target)
        )

    async def _switch(
        self, model_set: str, version: int, record: Callable[[], Awaitable[ModelVersion]]
    ) -> ModelVersion:
        versions = await self.registry.versions_of(model_set)
        checked_move(versions, version, "champion")  # refused before Triton is touched
        serving = next((v.version for v in versions if v.status == "champion"), None)
        await self._serve(model_set, version)
        try:
            moved = await record()
        except BaseException:
            if serving is not None:
                with contextlib.suppress(Exception):  # the record's error is the one to report
                    await self._serve(model_set, serving)
            raise
        await asyncio.to_thread(pin_in_repository, self.repository, model_set, version)
        return moved

    async def _serve(self, model_set: str, version: int) -> None:
        spec = await asyncio.to_thread(version_spec, self.repository, model_set, version)
        await serve_version(self.triton, model_set, version, self.timeout_s, spec)
