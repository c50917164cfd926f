"""``GET /v1/me``: who the caller is (an API key, or a console user's session)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from litestar import Request, get
from sqlalchemy.ext.asyncio import AsyncSession

from timebank.auth import users
from timebank.auth.me import key_me, user_me
from timebank.auth.schemas import MeOut
from timebank.config import Settings
from timebank.db import utcnow
from timebank.web.auth import provide_principal
from timebank.web.openapi import CONSOLE_SESSION
from timebank.web.problems import problems


@get(
    "/v1/me",
    tags=["api keys"],
    responses=problems(),
    operation_id="getMe",
    summary="Who am I: the key's role, time banks and (member keys) member and account",
    description="A partner app holding only a member key learns here the `member_id` and "
    "`account_id` its other calls need. A console user's session (its cookie) may ask too.",
    opt={CONSOLE_SESSION: True},
)
async def me(request: Request[Any, Any, Any], db_session: AsyncSession) -> MeOut:
    token = request.cookies.get(users.SESSION_COOKIE)
    if request.headers.get("authorization") is None and token is not None:
        settings: Settings = request.app.state.settings
        clock: Callable[[], datetime] = request.app.state.get("clock") or utcnow
        who = await users.resolve(
            db_session,
            token,
            now=clock(),
            idle=timedelta(minutes=settings.console_idle_minutes),
            absolute=timedelta(hours=settings.console_absolute_hours),
        )
        if who is not None:
            found = await user_me(db_session, who)
            return found
    principal = await provide_principal(request, db_session)
    found = await key_me(db_session, principal)
    return found


@get("/console/me.json", include_in_schema=False)
async def console_me(request: Request[Any, Any, Any], db_session: AsyncSession) -> MeOut:
    """``GET /v1/me`` where a browser sends the console's session cookie (its path is
    ``/console``)."""
    found: MeOut = await me.fn(request, db_session)
    return found
