"""Every Triton a model switch must reach.

Behind a load-balanced address (a Kubernetes Service in front of several Triton replicas) one
gRPC channel reaches one replica, so a switch sent through it would leave the others serving
the old version. With TRITON_PEERS set, the lifecycle resolves the peers on every switch (a
headless Service's name gives one address per ready pod) and applies the switch to each of
them; without it, to the one Triton it is connected to.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import tritonclient.grpc.aio as grpcclient

from orchestrator.errors import ModelsUnavailableError


async def resolve(peers: tuple[str, ...]) -> list[str]:
    """The "address:port" of every server the "host:port" entries resolve to, each once."""
    loop = asyncio.get_running_loop()
    found: list[str] = []
    for peer in peers:
        host, _, port = peer.rpartition(":")
        try:
            infos = await loop.getaddrinfo(host, int(port), type=socket.SOCK_STREAM)
        except OSError as exc:
            raise ModelsUnavailableError(
                f"TRITON_PEERS entry {peer!r} does not resolve ({exc}); name the Triton servers "
                "a switch must reach (a headless Service's name in Kubernetes)"
            ) from None
        for family, _, _, _, address in infos:
            ip = str(address[0])
            entry = f"[{ip}]:{port}" if family == socket.AF_INET6 else f"{ip}:{port}"
            if entry not in found:
                found.append(entry)
    return found


@contextlib.asynccontextmanager
async def servers(
    client: grpcclient.InferenceServerClient, peers: tuple[str, ...]
) -> AsyncIterator[list[grpcclient.InferenceServerClient]]:
    """A client per peer (closed afterwards), or `client` alone without peers."""
    if not peers:
        yield [client]
        return
    clients = [grpcclient.InferenceServerClient(address) for address in await resolve(peers)]
    try:
        yield clients
    finally:
        for each in clients:
            with contextlib.suppress(Exception):
                await each.close()


async def on_every(
    clients: list[grpcclient.InferenceServerClient],
    change: Callable[[grpcclient.InferenceServerClient], Awaitable[None]],
    undo: Callable[[grpcclient.InferenceServerClient], Awaitable[None]] | None = None,
) -> None:
    """`change` on every server at once; when one fails, `undo` on those it succeeded on (so the
    servers keep agreeing), then the first failure is raised."""
    outcomes = await asyncio.gather(*(change(c) for c in clients), return_exceptions=True)
    failures = [o for o in outcomes if isinstance(o, BaseException)]
    if not failures:
        return
    if undo is not None:
        changed = [c for c, o in zip(clients, outcomes, strict=True) if o is None]
        for each in changed:
            with contextlib.suppress(Exception):
                await undo(each)
    raise failures[0]
