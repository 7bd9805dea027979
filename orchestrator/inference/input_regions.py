"""A sweep's Triton inputs through system shared memory instead of inside the gRPC message.

A 10,000-symbol sweep sends ~80 MB of inputs (40 requests of 256 rows of 64 bars x 26 features,
float32). Inside the gRPC message they are copied into protobuf on the engine's event loop and
parsed again by Triton: py-spy put the client's part at ~8 % of the loop's time during a sweep.
When Triton runs on the same host, each request in flight instead takes a region of /dev/shm
registered with Triton once; the inputs are copied into it and the request only names it
(Triton's system shared memory protocol). The outputs are small and stay in the message.

The message is still used whenever a region cannot be: the setting is off (Triton in another
container or on another machine: TRITON_SHARED_MEMORY), every region is taken, /dev/shm has no
room or Triton could not register a region (both tried again after REGISTER_RETRY_S), or Triton
no longer knows it (it restarted: the request goes again by message and the next ones register
the regions again).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
import tritonclient.grpc.aio as grpc_aio
from tritonclient.utils import InferenceServerException

from orchestrator.features.dataset import F32

log = logging.getLogger("orchestrator.inference")

MAX_REGIONS = 16  # requests in flight at once: two sweeps of four chunks need eight
REGION_ALIGN_BYTES = 1 << 20  # whole MiB, so one region fits every full chunk of a model set
REGISTER_RETRY_S = 60.0  # after Triton refused a region: the message until then


@dataclass
class Region:
    """One region of /dev/shm, mapped here and (once `registered`) known to Triton by `name`."""

    name: str
    memory: SharedMemory
    registered: bool = False

    @property
    def byte_size(self) -> int:
        return self.memory.size


def lost_region(exc: InferenceServerException) -> bool:
    """Whether Triton refused a request because it does not know its shared-memory region."""
    return "shared memory" in str(exc.message() or exc).lower()


class InputRegions:
    """Shared-memory regions for request inputs, one per request in flight."""

    def __init__(self, client: grpc_aio.InferenceServerClient) -> None:
        self._client = client
        self._prefix = f"engine-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._regions: list[Region] = []
        self._free: list[Region] = []
        self._returned = asyncio.Event()
        self._refused_at = -REGISTER_RETRY_S
        self.requests = 0  # requests whose inputs went through a region
        self.last_refusal: str | None = None  # why the message was used, the last time

    @property
    def names(self) -> list[str]:
        """The regions made so far (their /dev/shm names)."""
        return [region.name for region in self._regions]

    async def take(
        self, arrays: Sequence[tuple[str, F32]]
    ) -> tuple[list[grpc_aio.InferInput], Region] | None:
        """Inputs that name a region holding a copy of `arrays`; None: send them in the message.
        The region is the caller's until given back (`holding`)."""
        if time.monotonic() - self._refused_at < REGISTER_RETRY_S:
            return None
        try:
            region = self._fitting(sum(array.nbytes for _, array in arrays))
        except OSError as exc:  # /dev/shm full or missing
            self._refused(f"no region could be made in /dev/shm: {exc}")
            return None
        if region is None:
            return None
        if not region.registered:
            try:
                await self._client.register_system_shared_memory(
                    region.name, f"/{region.name}", region.byte_size
                )
            except InferenceServerException as exc:
                self.give_back(region)
                self._refused(f"Triton did not register a region: {exc.message() or exc}")
                return None
            region.registered = True
        tensors, offset = [], 0
        for name, array in arrays:
            view: F32 = np.ndarray(array.shape, np.float32, buffer=region.memory.buf, offset=offset)
            view[...] = array
            tensor = grpc_aio.InferInput(name, list(array.shape), "FP32")
            tensor.set_shared_memory(region.name, array.nbytes, offset)
            tensors.append(tensor)
            offset += array.nbytes
        self.requests += 1
        return tensors, region

    def _refused(self, why: str) -> None:
        self._refused_at, self.last_refusal = time.monotonic(), why
        log.warning(
            "%s; request inputs go inside the gRPC message for %.0f s "
            "(TRITON_SHARED_MEMORY=off skips the attempt)",
            why,
            REGISTER_RETRY_S,
        )

    async def holding[T](self, region: Region, call: Coroutine[Any, Any, T]) -> T:
        """`call`, then `region` back to the pool: whatever the outcome, once Triton is done."""
        try:
            return await call
        finally:
            self.give_back(region)

    def give_back(self, region: Region) -> None:
        self._free.append(region)
        self._returned.set()

    def forget_registrations(self) -> None:
        """Triton no longer knows the regions (it restarted): each registers again on next use."""
        for region in self._regions:
            region.registered = False

    def _fitting(self, need: int) -> Region | None:
        for i, region in enumerate(self._free):
            if region.byte_size >= need:
                return self._free.pop(i)
        if len(self._regions) >= MAX_REGIONS:
            return None
        size = -(-need // REGION_ALIGN_BYTES) * REGION_ALIGN_BYTES
        name = f"{self._prefix}-{len(self._regions)}"
        region = Region(name, SharedMemory(name, create=True, size=size))
        self._regions.append(region)
        return region

    async def close(self, timeout_s: float) -> None:
        """Waits (up to `timeout_s`, the requests' deadline) for the requests still using a
        region, then unregisters and removes every region (Triton may be gone already)."""
        deadline = time.monotonic() + timeout_s
        while len(self._free) < len(self._regions) and time.monotonic() < deadline:
            self._returned.clear()
            try:
                await asyncio.wait_for(self._returned.wait(), deadline - time.monotonic())
            except TimeoutError:
                break
        for region in self._regions:  # registered or not as far as we know: Triton may differ
            try:
                await self._client.unregister_system_shared_memory(region.name)
            except InferenceServerException as exc:
                log.debug("shared-memory region %s not unregistered: %s", region.name, exc)
            region.memory.close()
            region.memory.unlink()
        self._regions.clear()
        self._free.clear()
