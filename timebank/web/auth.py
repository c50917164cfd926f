"""The caller: a ``Principal`` from the request's API key, injected into every handler."""

from __future__ import annotations

from typing import Any

from litestar import Request
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.access import Principal
from timebank.auth import service as auth


async def provide_principal(request: Request[Any, Any, Any], db_session: AsyncSession) -> Principal:
    return await auth.authenticate(db_session, request.headers.get("authorization"))
