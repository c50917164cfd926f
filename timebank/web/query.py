"""Query parameters are strings on the wire, and the document says so: an optional one is
left out, never sent as ``null``. Litestar would quietly read ``?limit=null`` as "no limit
given"; this refuses it in words instead, so the service and its document agree. A query
parameter the operation does not know (``?updated_sinse=``, ``?sort=`` where there is none)
is refused too, naming the ones it knows: ignored, it would answer something else than was
asked, as an unknown body field would."""

from __future__ import annotations

import difflib
import typing
from typing import Any

from litestar import Request
from litestar.routes import HTTPRoute

from timebank.errors import InvalidInput

_KNOWN = "_known_query_parameters"


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


def known_queries(request: Request[Any, Any, Any]) -> frozenset[str] | None:
    """The query parameters (wire names) the request's operation takes, with its
    dependencies'; ``None`` for a route outside the API's document (the console's pages)."""
    known: dict[int, frozenset[str] | None] | None = request.app.state.get(_KNOWN)
    if known is None:
        known = {}
        for route in request.app.routes:
            if not isinstance(route, HTTPRoute):
                continue
            for handler, model in route.route_handler_map.values():
                names = frozenset(p.field_alias for p in model.expected_query_params)
                known[id(handler)] = names if handler.resolve_include_in_schema() else None
        request.app.state[_KNOWN] = known
    return known.get(id(request.route_handler))


def _refuse_unknown(request: Request[Any, Any, Any]) -> None:
    sent = list(dict.fromkeys(request.query_params))
    if not sent:
        return
    known = known_queries(request)
    if known is None:
        return
    unknown = [name for name in sent if name not in known]
    if not unknown:
        return
    listed = ", ".join(sorted(known))
    errors = []
    for name in unknown:
        close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        guess = f" (did you mean '{close[0]}'?)" if close else ""
        takes = f"this operation takes {listed}" if known else "this operation takes none"
        message = f"unknown query parameter{guess}; {takes}"
        errors.append({"field": name, "message": message})
    exc = InvalidInput.of(errors)
    exc.extra["known_parameters"] = sorted(known)
    raise exc


def _optional_body(request: Request[Any, Any, Any]) -> bool:
    """Whether the request's operation takes a JSON body that may be left out."""
    data = request.route_handler.parsed_fn_signature.parameters.get("data")
    return data is not None and (data.is_optional or data.has_default)


async def refuse_null_queries(request: Request[Any, Any, Any]) -> None:
    """A ``before_request`` hook: a query parameter the operation does not take, or
    ``?name=null`` for one that is not free text; and a JSON ``null`` as the body of an
    operation whose body may be left out (Litestar reads it as "no body": leave it out, or
    send an object)."""
    _refuse_unknown(request)
    if _optional_body(request) and (await request.body()).strip() == b"null":
        raise InvalidInput("body", "send a JSON object (e.g. {}) or no body at all, not null")
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
