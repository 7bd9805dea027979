"""Promotion, rollback and a challenger loaded in shadow: Triton and the registry changed
together, or neither.

Order: check the move against the registry, switch Triton (what served keeps serving until the
new versions are ready, and when their load fails), then record the move in one transaction.
When recording fails (the database went away, another admin moved the set meanwhile), Triton is
switched back to what it held before, so what serves is what the registry says.

Triton holds the champion, the challenger beside it while one is judged (scored in shadow,
never served: the engine asks for the served version by number), and the previous champion on
standby: a rollback to it only narrows the version policy, which Triton applies without
loading anything (measured: milliseconds, against seconds for a load).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import tritonclient.grpc.aio as grpcclient

from orchestrator.lifecycle.fleet import on_every, servers
from orchestrator.lifecycle.registry import (
    ModelRegistry,
    ModelVersion,
    StatusMoveError,
    checked_move,
)
from orchestrator.lifecycle.switch import (
    Loaded,
    named_bar,
    narrow_to,
    pin_profiles,
    serve_version,
    served_versions,
)
from orchestrator.marketdata.db import Database
from orchestrator.marketdata.store import BarStore
from orchestrator.marketdata.timeframes import Timeframe


async def next_bar_open(db: Database, timeframe: Timeframe) -> datetime | None:
    """The open time of the first `timeframe` bar after the newest stored bar of any symbol
    (None with no bars): the data's clock rather than the wall clock, so a replay of old bars
    switches at its own next bar too."""
    newest = max((await BarStore(db).last_bar_times()).values(), default=None)
    if newest is None:
        return None
    step = timeframe.seconds
    return datetime.fromtimestamp((int(newest.timestamp()) // step + 1) * step, UTC)


def _from_bar(reason: str, first_bar: str | None) -> str:
    """The move's reason, saying from which bar the promoted version answers."""
    return reason if first_bar is None else f"{reason} (answers from the bar opening {first_bar})"


def loaded_for(versions: list[ModelVersion], champion: int, standby: int | None = None) -> Loaded:
    """What Triton should hold when `champion` serves: it, the set's challenger if any, and
    `standby` (the version a rollback would return to)."""
    challenger = next(
        (v.version for v in versions if v.status == "challenger" and v.version != champion), None
    )
    spare = () if standby is None or standby in (champion, challenger) else (standby,)
    return Loaded(champion, challenger, spare)


class Lifecycle:
    def __init__(
        self,
        registry: ModelRegistry,
        triton: grpcclient.InferenceServerClient,
        repository: Path,
        timeout_s: float,
        peers: tuple[str, ...] = (),
    ) -> None:
        """`peers`: every Triton a switch must reach (TRITON_PEERS, orchestrator/lifecycle/
        fleet.py); empty: `triton` alone."""
        self.registry = registry
        self.triton = triton
        self.repository = repository
        self.timeout_s = timeout_s
        self.peers = peers

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
            lambda first_bar: self.registry.move(
                model_set, version, "champion", actor, _from_bar(reason, first_bar), decision
            ),
            at_next_bar=True,
        )

    async def rollback(self, model_set: str, actor: str, reason: str) -> ModelVersion:
        """The previous champion serves again: at once when it is on standby in Triton (the
        version policy narrowed to it and the challenger), else once Triton has loaded it."""
        target = await self.registry.rollback_target(model_set)
        versions = await self.registry.versions_of(model_set)
        checked_move(versions, target, "champion")
        serving = next((v.version for v in versions if v.status == "champion"), None)
        async with servers(self.triton, self.peers) as clients:
            ready = await self._ready_everywhere(clients, model_set)
            if target not in ready or serving is None:
                return await self._switch(
                    model_set,
                    target,
                    lambda _: self.registry.rollback(model_set, actor, reason, target),
                )
            after = loaded_for(versions, target)
            before = loaded_for(versions, serving, target)
            await on_every(
                clients,
                lambda c: narrow_to(c, model_set, after.versions, self.timeout_s),
                lambda c: self._serve_one(c, model_set, before),
            )
        try:
            moved = await self.registry.rollback(model_set, actor, reason, target)
        except BaseException:
            with contextlib.suppress(Exception):  # the record's error is the one to report
                await self.serve(model_set, loaded_for(versions, serving, target))
            raise
        await asyncio.to_thread(pin_profiles, self.repository, model_set, after)
        return moved

    async def load_challenger(self, model_set: str, version: int) -> None:
        """Triton loads `version` beside the champion, which keeps serving (VersionLoadError
        when it cannot: the champion is untouched)."""
        versions = await self.registry.versions_of(model_set)
        champion = next(v.version for v in versions if v.status == "champion")
        loaded = Loaded(champion, version, (await self._standby(model_set, champion),))
        loaded = loaded._replace(standby=tuple(v for v in loaded.standby if v > 0))
        # A promotion's named bar may not have closed yet: the reload keeps it.
        boundary = await named_bar(self.triton, model_set, self.timeout_s)
        if boundary is not None and boundary[0] in loaded.versions:
            loaded = loaded._replace(previous=boundary[0], first_bar=boundary[1])
        await self.serve(model_set, loaded, undo=loaded._replace(challenger=None))
        await asyncio.to_thread(pin_profiles, self.repository, model_set, loaded)

    async def _standby(self, model_set: str, champion: int) -> int:
        """The version a rollback from `champion` would serve, when its files are at hand
        (0: none)."""
        try:
            target = await self.registry.rollback_target(model_set)
        except StatusMoveError:
            return 0
        folder = self.repository / model_set / str(target)
        return target if target != champion and folder.is_dir() else 0

    async def serve(self, model_set: str, loaded: Loaded, undo: Loaded | None = None) -> None:
        """Every Triton holds `loaded`; when one cannot, those that switched go back to `undo`
        (when given) and the error is raised."""
        async with servers(self.triton, self.peers) as clients:
            await on_every(
                clients,
                lambda c: self._serve_one(c, model_set, loaded),
                None if undo is None else lambda c: self._serve_one(c, model_set, undo),
            )

    async def _serve_one(
        self, client: grpcclient.InferenceServerClient, model_set: str, loaded: Loaded
    ) -> None:
        await serve_version(client, model_set, loaded, self.timeout_s, self.repository)

    async def _ready_everywhere(
        self, clients: list[grpcclient.InferenceServerClient], model_set: str
    ) -> set[int]:
        """The versions of the set every server has ready."""
        ready = await asyncio.gather(
            *(served_versions(c, model_set, self.timeout_s) for c in clients)
        )
        return set.intersection(*(set(r) for r in ready))

    async def _switch(
        self,
        model_set: str,
        version: int,
        record: Callable[[str | None], Awaitable[ModelVersion]],
        at_next_bar: bool = False,
    ) -> ModelVersion:
        """`version` serves: from the next bar to open when `at_next_bar` (a promotion: the
        champion it replaces answers the bars before, so no bar gets two versions), else at
        once (a rollback: the bad version must stop answering now)."""
        versions = await self.registry.versions_of(model_set)
        checked_move(versions, version, "champion")  # refused before Triton is touched
        serving = next((v.version for v in versions if v.status == "champion"), None)
        # The champion it replaces stays loaded on standby: the next rollback is immediate.
        standby = serving if serving is not None and serving != version else None
        if standby is not None and not (self.repository / model_set / str(standby)).is_dir():
            standby = None
        target = loaded_for(versions, version, standby)
        if at_next_bar and standby is not None:
            timeframe = next(v.timeframe for v in versions if v.version == version)
            first_bar = await next_bar_open(self.registry.db, Timeframe(timeframe))
            if first_bar is not None:
                target = target._replace(previous=standby, first_bar=first_bar.isoformat())
        before = None if serving is None else loaded_for(versions, serving)
        await self.serve(model_set, target, undo=before)
        try:
            moved = await record(target.first_bar)
        except BaseException:
            if serving is not None:
                with contextlib.suppress(Exception):  # the record's error is the one to report
                    await self.serve(model_set, loaded_for(versions, serving))
            raise
        await asyncio.to_thread(pin_profiles, self.repository, model_set, target)
        return moved
