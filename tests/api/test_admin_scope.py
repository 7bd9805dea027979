"""Who may promote or roll back a model set: the admin key, or a JWT with the admin scope."""

from __future__ import annotations

import time
from typing import Any

import jwt
import pytest
from litestar import Request

from orchestrator.api.security import check_credentials, require_admin
from orchestrator.errors import ForbiddenError, UnauthorizedError
from orchestrator.settings import ApiSettings

SETTINGS = ApiSettings(internal_api_key="user-key", jwt_secret="s" * 32, admin_api_key="admin")


def _request(token: str | None) -> Request[Any, Any, Any]:
    headers = [] if token is None else [(b"authorization", f"Bearer {token}".encode())]
    return Request({"type": "http", "headers": headers, "query_string": b"", "path": "/"})  # type: ignore[arg-type]


def _jwt(**claims: Any) -> str:
    return jwt.encode({"exp": time.time() + 60, **claims}, SETTINGS.jwt_secret, "HS256")


def test_the_admin_key_and_an_admin_scoped_jwt_may() -> None:
    require_admin(SETTINGS, _request("admin"))
    require_admin(SETTINGS, _request(_jwt(scope="read admin")))
    require_admin(SETTINGS, _request(_jwt(scope=["admin"])))
    assert check_credentials(SETTINGS, "admin") is None  # the admin key passes the API's door


@pytest.mark.parametrize("token", ["user-key", _jwt(scope="read"), _jwt(), "forged"])
def test_other_credentials_are_forbidden_with_the_way_in(token: str) -> None:
    with pytest.raises(ForbiddenError, match="ADMIN_API_KEY as X-API-Key, or a JWT") as refused:
        require_admin(SETTINGS, _request(token))
    assert refused.value.status == 403


def test_no_credentials_is_unauthorized_and_an_open_api_lets_everyone() -> None:
    with pytest.raises(UnauthorizedError) as missing:
        require_admin(SETTINGS, _request(None))
    assert missing.value.status == 401
    require_admin(ApiSettings(), _request(None))
