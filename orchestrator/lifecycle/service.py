"""Promotion, rollback and a challenger loaded in shadow: Triton and the registry changed
together, or neither.

Order: check the move against the registry, switch Triton (what served keeps serving until the
new versions are ready, and when their load fails), then record the move in one transaction.
When recording fails (the database went away, another admin moved the set meanwhile), Triton is
switched back to what it held before, so what serves is what the registry says.

Triton holds the champion, and the challenger beside it while one is judged (scored in shadow,
never served: the engine asks for the served version by number).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import tritonclient.grpc.aio as grpcclient

from orchestrator.lifecycle.registry import ModelRegistry, ModelVersion, checked_move
from orchestrator.lifecycle.switch import Loaded, pin_in_repository, serve_version


def loaded_for(versions: list[ModelVersion], champion: int) -> Loaded:
    """What Triton should hold when `champion` serves: it, and the set's challenger if any."""
    challenger = next(
        (v.version for v in versions if v.status == "challenger" and v.version != champion), None
    )
    return Loaded(champion, () if challenger is None else (challenger,))


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

    async def promote(
        self,
        model_set: str,
        version: int,
        actor: str,
        reason: str,
        decision: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """`version` serves from now on: forced by an admin (the reason recorded), or by the
        promotion test (its numbers in `decision`)."""
        return await self._switch(
            model_set,
            version,
            lambda: self.registry.move(model_set, version, "champion", actor, reason, decision),
        )

    async def rollback(self, model_set: str, actor: str, reason: str) -> ModelVersion:
        """The previous champion serves again."""
        target = await self.registry.rollback_target(model_set)
        return await self._switch(
            model_set, target, lambda: self.registry.rollback(model_set, actor, reason, target)
        )

    async def load_challenger(self, model_set: str, version: int) -> None:
        """Triton loads `version` beside the champion, which keeps serving (VersionLoadError
        when it cannot: the champion is untouched)."""
        versions = await self.registry.versions_of(model_set)
        champion = next(v.version for v in versions if v.status == "champion")
        loaded = Loaded(champion, (version,))
        await self.serve(model_set, loaded)
        await asyncio.to_thread(pin_in_repository, self.repository, model_set, loaded)

    async def serve(self, model_set: str, loaded: Loaded) -> None:
        await serve_version(self.triton, model_set, loaded, self.timeout_s, self.repository)

    async def _switch(
        self, model_set: str, version: int, record: Callable[[], Awaitable[ModelVersion]]
    ) -> ModelVersion:
        versions = await self.registry.versions_of(model_set)
        checked_move(versions, version, "champion")  # refused before Triton is touched
        serving = next((v.version for v in versions if v.status == "champion"), None)
        target = loaded_for(versions, version)
        await self.serve(model_set, target)
        try:
            moved = await record()
        except BaseException:
            if serving is not None:
                with contextlib.suppress(Exception):  # the record's error is the one to report
                    await self.serve(model_set, loaded_for(versions, serving))
            raise
        await asyncio.to_thread(pin_in_repository, self.repository, model_set, target)
        return moved
