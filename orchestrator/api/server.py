"""uvicorn with a graceful shutdown that says goodbye properly.

On SIGTERM uvicorn stops accepting, asks every connection to finish (HTTP requests in flight
complete, up to `timeout_graceful_shutdown`) and closes WebSockets with 1012 ("service restart").
Clients of this API reconnect to another replica on 1001 ("going away"), so the stream hub closes
its sockets with 1001 first, then uvicorn drains the rest.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import uvicorn
from litestar import Litestar

GOODBYE_TIMEOUT_S = 2.0  # how long WebSocket clients get to receive their close frame
DRAIN_TIMEOUT_S = 20.0  # in-flight HTTP requests finish within this, or are cancelled


class GracefulServer(uvicorn.Server):
    def __init__(self, app: Litestar, **options: Any) -> None:
        options.setdefault("timeout_graceful_shutdown", DRAIN_TIMEOUT_S)
        super().__init__(uvicorn.Config(app, **options))
        self.app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        hub = getattr(self.app.state, "stream", None)
        if hub is not None:
            await hub.close()  # every stream connection sends its 1001 close frame
            deadline = asyncio.get_running_loop().time() + GOODBYE_TIMEOUT_S
            while hub.snapshot().clients and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110 (no event for the last client leaving)
                await asyncio.sleep(0.02)
        await super().shutdown(sockets)


def serve(app: Litestar, host: str, port: int) -> None:
    """Blocks until SIGINT/SIGTERM, then shuts down gracefully."""
    GracefulServer(app, host=host, port=port, log_level="info", access_log=False).run()
