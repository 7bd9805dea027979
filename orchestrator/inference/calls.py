"""Inference calls to Triton that this process never cancels.

Triton 2.51, the newest server the nvidia-pytriton wheel ships, can die of SIGSEGV when a client
cancels an inference just as it completes (a race in its gRPC handler,
triton-inference-server/server#7368, fixed upstream in 24.12 by #7840): one shut-down API whose
sweep was in flight took down the Triton every other replica used (a CI run on 2026-12-06, its
log's "Signal (11) received ... pthread_mutex_lock"). So an inference runs to its end, bounded
by its deadline, even when the coroutine awaiting it is cancelled, and a client is closed only
after its inferences have ended. A killed process still drops its calls; the deployment
restarts a Triton that exits (docs/reliability.md).
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Coroutine
from typing import Any

import tritonclient.grpc.aio as grpc_aio

_IN_FLIGHT: weakref.WeakKeyDictionary[grpc_aio.InferenceServerClient, set[asyncio.Task[Any]]] = (
    weakref.WeakKeyDictionary()
)


def _settle(task: asyncio.Task[Any]) -> None:
    """Marks an abandoned call's outcome as seen (no "exception was never retrieved")."""
    if not task.cancelled():
        task.exception()


async def uncancelled[T](client: grpc_aio.InferenceServerClient, call: Coroutine[Any, Any, T]) -> T:
    """Awaits `call` (one request on `client`); cancelling the caller leaves the request to
    finish in the background instead of cancelling it on the wire."""
    task = asyncio.ensure_future(call)
    calls = _IN_FLIGHT.setdefault(client, set())
    calls.add(task)
    task.add_done_callback(calls.discard)
    task.add_done_callback(_settle)
    return await asyncio.shield(task)


async def close_client(client: grpc_aio.InferenceServerClient, timeout_s: float) -> None:
    """Closes `client` once its inferences have ended (at most `timeout_s`, their deadline)."""
    calls = list(_IN_FLIGHT.get(client, ()))
    if calls:
        await asyncio.wait(calls, timeout=timeout_s)
    await client.close()
