"""The request id: honoured from ``X-Request-ID`` (or made), echoed, and put on every log
line of the request; one access log line per request."""

from __future__ import annotations

import logging
import uuid

from litestar.enums import ScopeType
from litestar.types import ASGIApp, Message, Receive, Scope, Send

from timebank.logs import request_id_var


def _valid_request_id(value: str) -> bool:
    return 0 < len(value) <= 128 and all(c.isalnum() or c in "-_.:" for c in value)


def request_id_from(scope: Scope) -> str:
    """The request's id: a valid ``X-Request-ID`` it came with, else one made for it (once
    per request: kept in the scope's state)."""
    state = scope.get("state", {})
    if "request_id" in state:
        return str(state["request_id"])
    given = ""
    for name, value in scope.get("headers", []):
        if name == b"x-request-id":
            given = value.decode("latin-1")
            break
    rid = given if _valid_request_id(given) else uuid.uuid4().hex
    state["request_id"] = rid
    return rid


class RequestIdMiddleware:
    """Honours ``X-Request-ID`` (or makes one), echoes it, and logs one line per request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.log = logging.getLogger("timebank.access")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != ScopeType.HTTP:
            await self.app(scope, receive, send)
            return
        rid = request_id_from(scope)
        scope.setdefault("state", {})["request_id"] = rid
        token = request_id_var.set(rid)
        status_holder: dict[str, int] = {}

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder["status"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            self.log.info(
                "request",
                extra={
                    "method": scope.get("method"),
                    "path": scope.get("path"),
                    "status": status_holder.get("status"),
                },
            )
            request_id_var.reset(token)
