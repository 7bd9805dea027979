"""Shared-key / JWT authentication, and the rate-limit identity behind the gateway.

Litestar's default rate-limit identity is the socket peer, which behind the Express gateway is
the gateway itself for every user; here the identity is the API key or JWT subject, else the
first X-Forwarded-For hop when the peer is a trusted proxy, else the peer address.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any
from urllib.parse import parse_qsl

import jwt
import msgspec
from litestar import Request
from litestar.enums import ScopeType
from litestar.middleware import ASGIMiddleware
from litestar.types import (
    ASGIApp,
    HTTPResponseBodyEvent,
    HTTPResponseStartEvent,
    Receive,
    Scope,
    Send,
)

from orchestrator.errors import ForbiddenError, UnauthorizedError
from orchestrator.settings import ApiSettings

PROTECTED_PREFIXES = ("/api", "/ws")


def _presented_token(headers: dict[str, str], query: str) -> str | None:
    if key := headers.get("x-api-key"):
        return key
    auth = headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    # Browsers cannot set headers on a WebSocket: the key comes as ?token=, form-encoded (as
    # URLSearchParams writes it: a key's "+" is %2B, "/" %2F, "=" %3D and "%" %25).
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "token":
            return value
    return None


def _same(token: str, key: str) -> bool:
    return bool(key) and hmac.compare_digest(token.encode(), key.encode())


def _jwt_claims(settings: ApiSettings, token: str) -> dict[str, Any] | str:
    """The claims of a valid JWT, or why it is not one."""
    if not settings.jwt_secret:
        return "invalid credentials"
    try:
        claims: dict[str, Any] = jwt.decode(
            token, settings.jwt_secret, algorithms=["HS256"], options={"require": ["exp"]}
        )
    except jwt.ExpiredSignatureError:
        return "token expired"
    except jwt.InvalidTokenError:
        return "invalid credentials"
    return claims


def check_credentials(settings: ApiSettings, token: str | None) -> str | None:
    """None when allowed; otherwise why not. Keys are compared in constant time; the admin key
    is a valid key too."""
    if not settings.internal_api_key and not settings.jwt_secret:
        return None
    if not token:
        return "missing credentials: send X-API-Key (or Authorization: Bearer <key or JWT>)"
    if _same(token, settings.internal_api_key) or _same(token, settings.admin_api_key):
        return None
    claims = _jwt_claims(settings, token)
    return claims if isinstance(claims, str) else None


def require_admin(settings: ApiSettings, request: Request[Any, Any, Any]) -> None:
    """Admin actions (model promotion, rollback): the ADMIN_API_KEY, or a JWT whose `scope`
    (space-separated, or a list) includes "admin". UnauthorizedError (401) without
    credentials, ForbiddenError (403) with credentials that lack the scope. An API with no
    credentials configured at all is open (development)."""
    if not (settings.internal_api_key or settings.jwt_secret or settings.admin_api_key):
        return
    headers = {k.lower(): v for k, v in request.headers.items()}
    token = _presented_token(headers, request.scope.get("query_string", b"").decode())
    how = "send ADMIN_API_KEY as X-API-Key, or a JWT whose scope includes admin"
    if not token:
        raise UnauthorizedError(f"this action needs admin credentials: {how}")
    if _same(token, settings.admin_api_key):
        return
    claims = _jwt_claims(settings, token)
    scope = [] if isinstance(claims, str) else claims.get("scope", [])
    scopes = scope.split() if isinstance(scope, str) else list(scope)
    if "admin" not in scopes:
        raise ForbiddenError(f"this action needs the admin scope: {how}")


class AuthMiddleware(ASGIMiddleware):
    def __init__(self, settings: ApiSettings) -> None:
        self.settings = settings

    async def handle(self, scope: Scope, receive: Receive, send: Send, next_app: ASGIApp) -> None:
        path = str(scope.get("path", ""))
        if scope["type"] not in (ScopeType.HTTP, ScopeType.WEBSOCKET) or not path.startswith(
            PROTECTED_PREFIXES
        ):
            await next_app(scope, receive, send)
            return
        if scope["type"] == ScopeType.HTTP and scope.get("method") == "OPTIONS":
            await next_app(scope, receive, send)  # CORS preflight carries no credentials
            return
        headers = {k.decode().lower(): v.decode() for k, v in scope.get("headers", [])}
        query = scope.get("query_string", b"").decode()
        problem = check_credentials(self.settings, _presented_token(headers, query))
        if problem is None:
            await next_app(scope, receive, send)
            return
        if scope["type"] == ScopeType.WEBSOCKET:
            # Accept, then close with 4401 and the reason: a browser never sees a refused
            # handshake's status, but it does see a close code and reason.
            await receive()  # websocket.connect
            await send({"type": "websocket.accept", "subprotocol": None, "headers": []})
            await send({"type": "websocket.close", "code": 4401, "reason": problem})
            return
        body = msgspec.json.encode({"error": "Unauthorized", "message": problem})
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 401,
            "headers": [(b"content-type", b"application/json"), (b"www-authenticate", b"Bearer")],
        }
        end: HTTPResponseBodyEvent = {
            "type": "http.response.body",
            "body": body,
            "more_body": False,
        }
        await send(start)
        await send(end)


def rate_limit_identity(settings: ApiSettings) -> Any:
    def identify(request: Request[Any, Any, Any]) -> str:
        token = _presented_token(
            {k.lower(): v for k, v in request.headers.items()},
            request.scope.get("query_string", b"").decode(),
        )
        if token:
            return "key:" + hashlib.sha256(token.encode()).hexdigest()[:16]
        peer = request.client.host if request.client else "unknown"
        forwarded = request.headers.get("x-forwarded-for")
        if forwarded and peer in settings.trusted_proxies:
            return "ip:" + forwarded.split(",")[0].strip()
        return "ip:" + peer

    return identify
