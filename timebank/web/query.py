"""Query parameters are strings on the wire, and the document says so: an optional one is
left out, never sent as ``null``. Litestar would quietly read ``?limit=null`` as "no limit
given"; this refuses it in words instead, so the service and its document agree."""

from __future__ import annotations

import typing
from typing import Any

from litestar import Request

from timebank.errors import InvalidInput


def _is_text(annotation: Any) -> bool:
    args = [a for a in typing.get_args(annotation) if a is not type(None)] or [annotation]
    return all(a is str or typing.get_origin(a) is list for a in args)


def route_parameters(request: Request[Any, Any, Any]) -> dict[str, Any]:
    """The parsed parameters of the request's route and of its dependencies, by Python name."""
    handler = request.route_handler
    out = dict(handler.parsed_fn_signature.parameters)
    for dependency in handler.resolve_dependencies().values():
        signature = getattr(dependency, "parsed_fn_signature", None)
        if signature is not None:
            out |= signature.parameters
    return out


async def refuse_null_queries(request: Request[Any, Any, Any]) -> None:
    """A ``before_request`` hook: ``?name=null`` for a parameter that is not free text.
    (``async``, though it awaits nothing: Litestar runs a sync hook in a worker thread.)"""
    nulls = [k for k, v in request.query_params.multi_items() if v == "null"]
    if not nulls:
        return
    parameters = route_parameters(request)
    by_wire_name = {
        getattr(p.kwarg_definition, "query", None) or name: p.annotation
        for name, p in parameters.items()
    }
    for key in nulls:
        if key in by_wire_name and not _is_text(by_wire_name[key]):
            raise InvalidInput(key, "'null' is not a value: leave the parameter out instead")
