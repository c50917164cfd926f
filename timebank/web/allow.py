"""The ``Allow`` header of automatic OPTIONS answers."""

from __future__ import annotations

from litestar.datastructures import MutableScopeHeaders
from litestar.enums import ScopeType
from litestar.types import Message, Scope


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
