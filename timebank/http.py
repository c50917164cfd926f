"""Glue shared by the controllers: the caller's principal, idempotent creates, JSON bodies."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from litestar import Request, Response
from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.params import Parameter
from litestar.types import Message, Scope
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from timebank import idempotency
from timebank.auth import service as auth
from timebank.auth.principal import Principal
from timebank.config import get_settings
from timebank.errors import InvalidInput

IdempotencyKeyHeader = Parameter(
    header="Idempotency-Key",
    required=False,
    min_length=1,
    max_length=255,
    pattern=idempotency.KEY_PATTERN,
    description="1–255 printable ASCII characters; replays the first 2xx result for this API key.",
)


async def provide_principal(request: Request[Any, Any, Any], db_session: AsyncSession) -> Principal:
    return await auth.authenticate(db_session, request.headers.get("authorization"))


def as_json(model: Any) -> Any:
    if isinstance(model, BaseModel):
        return model.model_dump(mode="json")
    return model


async def create_response(
    request: Request[Any, Any, Any],
    session: AsyncSession,
    principal: Principal,
    effect: Callable[[AsyncSession], Awaitable[Any]],
    *,
    status: int = 201,
    subject_id: uuid.UUID | None = None,
    unstored_fields: tuple[str, ...] = (),
) -> Response[Any]:
    """Run a creating effect once per Idempotency-Key, in one committed transaction, and
    return the stored bytes so a replay is byte-identical."""
    key = idempotency.check_key(request.headers.get("idempotency-key"))
    try:
        body = json.loads(await request.body() or b"null")
    except ValueError:
        body = None
    fp = idempotency.fingerprint(request.method, request.url.path, body)

    async def run(s: AsyncSession) -> tuple[int, Any]:
        return status, as_json(await effect(s))

    assert principal.key_id is not None or key is None
    outcome = await idempotency.run_idempotent(
        session,
        api_key_id=principal.key_id or uuid.UUID(int=0),
        key=key,
        fp=fp,
        effect=run,
        subject_id=subject_id,
        retries=get_settings().write_retries,
        unstored_fields=unstored_fields,
    )
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else {}
    return Response(
        content=outcome.body,
        status_code=outcome.status,
        media_type="application/json",
        headers=headers,
    )


def parse_uuid(value: str | None, field: str) -> uuid.UUID | None:
    if value is None:
        return None
    try:
        return uuid.UUID(value)
    except ValueError as exc:
        raise InvalidInput(field, "not a valid id") from exc


async def complete_allow_header(message: Message, scope: Scope) -> None:
    """A ``before_send`` hook: Litestar 2's automatic answer to OPTIONS lists in ``Allow`` only
    the methods of the first handler registered on a path (litestar#4169, fixed in Litestar
    3), e.g. ``GET, OPTIONS`` on a path that also takes PATCH. List them all."""
    if (
        scope["type"] != ScopeType.HTTP
        or message["type"] != "http.response.start"
        or scope.get("method") != "OPTIONS"
    ):
        return
    headers = MutableScopeHeaders.from_message(message)
    handler = scope.get("route_handler")
    if "allow" not in headers or handler is None:
        return
    method_map = scope["app"].route_handler_method_map
    methods = {m for path in handler.paths for m in method_map.get(path, {})}
    if methods:
        headers["Allow"] = ", ".join(sorted(methods))
