"""Complete `Allow` headers on automatic OPTIONS answers.

Litestar 2 builds the OPTIONS handler of a path when the path's first route is created, so on a
path served by several handlers (GET /api/backtest from one, POST from another) it lists the
first handler's methods only (litestar-org/litestar#4169, fixed in Litestar 3). This hook
rewrites the header from the app's route map, which knows every method of the path.
"""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.types import Message, Scope


async def complete_allow_header(message: Message, scope: Scope) -> None:
    """A `before_send` hook: every method any handler serves on the path, plus OPTIONS."""
    if message["type"] != "http.response.start" or scope.get("method") != "OPTIONS":
        return
    handler = scope.get("route_handler")
    if handler is None:
        return
    routes = scope["litestar_app"].route_handler_method_map
    methods = {"OPTIONS"}
    for path in handler.paths:
        methods.update(routes.get(path, {}))
    headers = MutableScopeHeaders.from_message(message)
    if "allow" in headers:
        headers["Allow"] = ", ".join(sorted(methods))
