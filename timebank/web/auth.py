"""The caller: a ``Principal`` from the request's API key, injected into every handler."""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal
from timebank.auth import service as auth
from timebank.errors import Unauthorized


async def provide_principal(request: Request[Any, Any, Any], db_session: AsyncSession) -> Principal:
    return await auth.authenticate(db_session, request.headers.get("authorization"))


async def require_bearer(
    connection: ASGIConnection[Any, Any, Any, Any], _: BaseRouteHandler
) -> None:
    """A guard for the routes that authenticate inside the handler (the hot paths): a
    request without ``Authorization: Bearer …`` is answered 401 before its body is read, as
    on every other route, not 422 for the body it sent."""
    authorization = connection.headers.get("authorization")
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthorized("Send Authorization: Bearer <api key>")
