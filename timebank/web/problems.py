"""Problem details (RFC 9457): the one table from a domain error's ``code`` to its HTTP
status, the exception handlers that answer every error as ``application/problem+json``, and
the OpenAPI error responses of a route."""

from __future__ import annotations

import logging
import typing
from collections.abc import Sequence
from typing import Any

from litestar import Request, Response
from litestar.exceptions import (
    HTTPException,
    NotAuthorizedException,
    NotFoundException,
    PermissionDeniedException,
    ValidationException,
)
from litestar.openapi.datastructures import ResponseSpec
from pydantic import BaseModel
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from timebank.db import session_ended, sqlstate
from timebank.errors import DomainError, field_error
from timebank.logs import request_id_var
from timebank.web.language import localised
from timebank.web.query import route_parameters

log = logging.getLogger("timebank.errors")

PROBLEM_JSON = "application/problem+json"

STATUS: dict[str, int] = {
    # refused by the domain
    "unauthorized": 401,
    "forbidden": 403,
    "not_found": 404,
    "validation_error": 422,
    "idempotency_key_reused": 422,
    "balance_limit_exceeded": 409,
    "party_inactive": 409,
    "already_reversed": 409,
    "not_reversible": 409,
    "not_pending": 409,
    "idempotency_in_flight": 409,
    "duplicate": 409,
    "import_closed": 409,
    "batch_aborted": 424,
    "cursor_expired": 410,
    "rate_limited": 429,
    "report_timeout": 503,
    # refused by the web layer itself
    "malformed_request": 400,
    "method_not_allowed": 405,
    "request_timeout": 408,
    "payload_too_large": 413,
    "header_too_large": 431,
    "internal_error": 500,
    "unavailable": 503,
}


class Problem(BaseModel):
    """RFC 9457 problem details, as every error response of this API."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[dict[str, str]] | None = None
    request_id: str | None = None


def problem_response(
    status: int, code: str, title: str, detail: str, **extra: Any
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": f"https://timebank.example/problems/{code.replace('_', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    rid = request_id_var.get()
    if rid:
        body.setdefault("request_id", rid)
    headers = {}
    if status == 429 and "retry_after" in extra:
        headers["Retry-After"] = str(extra["retry_after"])
    return Response(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def status_of(code: str) -> int:
    return STATUS.get(code, 400)


def domain_problem(exc: DomainError) -> Response[dict[str, Any]]:
    return problem_response(status_of(exc.code), exc.code, exc.title, exc.detail, **exc.extra)


def _from_domain(_: Request[Any, Any, Any], exc: DomainError) -> Response[dict[str, Any]]:
    return domain_problem(exc)


def _wire_name(request: Request[Any, Any, Any], key: str) -> str:
    """The name a client used for a parameter: Litestar names a refused query or header
    parameter by its Python name (``date_from``, ``idempotency_key``), not ``from`` or
    ``Idempotency-Key``; the route's own parameters, or those of its dependencies."""
    try:
        param = route_parameters(request).get(key)
    except Exception:  # no route (e.g. a 404 from the router)
        return key
    kwarg = getattr(param, "kwarg_definition", None)
    for attr in ("query", "header", "cookie"):
        alias = getattr(kwarg, attr, None)
        if isinstance(alias, str) and alias:
            return alias
    return key


def _size(n: int) -> str:
    return f"{n / 2**20:g} MiB" if n >= 2**20 else f"{n / 2**10:g} KiB"


def _not_json(request: Request[Any, Any, Any], exc: HTTPException) -> str:
    """A body that is not JSON, in words: what was wrong and what to send instead."""
    detail = str(exc.detail)
    if not detail.startswith("JSON is malformed"):
        return detail
    why = detail.removeprefix("JSON is malformed").lstrip(": ")
    sent = request.headers.get("content-type")
    if sent is None:
        said = "no Content-Type"
    elif "json" not in sent.lower():
        said = f"Content-Type {sent}"
    else:
        said = None
    return (
        "The body is not valid JSON"
        + (f" ({why})" if why else "")
        + (f"; it was sent with {said}" if said else "")
        + ". Send a JSON object with Content-Type: application/json."
    )


def _body_model(request: Request[Any, Any, Any]) -> Any:
    """The model of the route's JSON body, if it has one."""
    try:
        data = request.route_handler.parsed_fn_signature.parameters.get("data")
    except Exception:  # no route
        return None
    if data is None:
        return None
    annotation = data.annotation
    for arg in (annotation, *typing.get_args(annotation)):
        if isinstance(arg, type) and issubclass(arg, BaseModel):
            return arg
    return None


def _from_http(request: Request[Any, Any, Any], exc: HTTPException) -> Response[dict[str, Any]]:
    """Litestar's own refusals as problems, keeping the headers they carry (e.g. the
    ``Allow`` of a 405, which RFC 9110 requires)."""
    response = _problem_for_http(request, exc)
    for name, value in (exc.headers or {}).items():
        response.headers.setdefault(name, value)
    return response


def _problem_for_http(
    request: Request[Any, Any, Any], exc: HTTPException
) -> Response[dict[str, Any]]:
    status = exc.status_code
    if isinstance(exc, ValidationException):
        errors = []
        for item in exc.extra if isinstance(exc.extra, list) else []:
            if isinstance(item, dict):
                key = str(item.get("key") or "")
                if key and item.get("source") != "body":
                    key = _wire_name(request, key)
                model = _body_model(request) if item.get("source") == "body" else None
                errors.append(field_error(key, str(item.get("message")), model))
        if not errors:
            errors = [{"field": "body", "message": str(exc.detail)}]
        return problem_response(
            422,
            "validation_error",
            "Validation error",
            "; ".join(f"{e['field']}: {e['message']}" for e in errors),
            errors=errors,
        )
    if status == 413:
        limit = request.app.state.settings.max_body_bytes
        return problem_response(
            413,
            "payload_too_large",
            "Payload too large",
            f"The body is over the limit of {_size(limit)} ({limit:,} bytes); send less at once "
            "(a batch takes up to 1000 exchanges)",
        )
    if status == 400:
        return problem_response(
            400, "malformed_request", "Malformed request", _not_json(request, exc)
        )
    if isinstance(exc, NotAuthorizedException) or status == 401:
        return problem_response(401, "unauthorized", "Unauthorized", str(exc.detail))
    if isinstance(exc, PermissionDeniedException) or status == 403:
        return problem_response(403, "forbidden", "Forbidden", str(exc.detail))
    if isinstance(exc, NotFoundException) or status == 404:
        return problem_response(404, "not_found", "Not found", str(exc.detail))
    if status == 405:
        return problem_response(405, "method_not_allowed", "Method not allowed", str(exc.detail))
    if status == 429:
        return problem_response(429, "rate_limited", "Rate limited", str(exc.detail))
    if status >= 500:
        log.error("http error %s: %s", status, exc.detail)
        return problem_response(status, "internal_error", "Internal error", "Internal error")
    return problem_response(status, "http_error", "HTTP error", str(exc.detail))


def _is_unique_violation(exc: IntegrityError) -> bool:
    text = str(exc.orig).lower()
    return "unique constraint" in text or "duplicate key" in text


def _is_unavailable(exc: Exception) -> bool:
    if isinstance(exc, PoolTimeoutError | ConnectionError | OSError | InterfaceError):
        return True
    if isinstance(exc, OperationalError):
        return True
    # A lost or refused connection; the server short of resources (class 53, e.g. too many
    # connections) or failing outside the query (class 58); or the database stopping a
    # statement (an operator's statement_timeout 57014, lock_timeout 55P03): nothing was
    # written, try again later. (SQLAlchemy's errors, and asyncpg's own from the one-call
    # paths, alike.)
    state = sqlstate(exc)
    if session_ended(state) or state[:2] in ("53", "58") or state in ("57014", "55P03"):
        return True
    if isinstance(exc, DBAPIError):
        return exc.connection_invalidated
    return type(exc).__module__.startswith("asyncpg") and "Connection" in type(exc).__name__


def _from_unexpected(_: Request[Any, Any, Any], exc: Exception) -> Response[dict[str, Any]]:
    if isinstance(exc, RecursionError):
        return problem_response(
            400, "malformed_request", "Malformed request", "JSON is nested too deeply"
        )
    if isinstance(exc, DataError) or sqlstate(exc).startswith("22"):
        # The database refused a value for its column (e.g. a NUL character in text).
        log.info("data error: %s", exc.__class__.__name__)
        errors = [{"field": "body", "message": "a value is not acceptable to the database"}]
        return problem_response(
            422, "validation_error", "Validation error", errors[0]["message"], errors=errors
        )
    if (isinstance(exc, IntegrityError) and _is_unique_violation(exc)) or sqlstate(exc) == "23505":
        return problem_response(409, "duplicate", "Duplicate", "A unique field is already taken")
    if _is_unavailable(exc):
        log.warning("database unavailable: %s", exc.__class__.__name__, exc_info=exc)
        return problem_response(503, "unavailable", "Service unavailable", "Database unreachable")
    log.error("unexpected error", exc_info=exc)
    return problem_response(
        500, "internal_error", "Internal error", "An unexpected error occurred; see request_id."
    )


exception_handlers: dict[int | type[Exception], Any] = {
    DomainError: localised(_from_domain),
    HTTPException: localised(_from_http),
    Exception: localised(_from_unexpected),
}


_DESCRIPTIONS = {
    400: "Malformed request (`malformed_request`): the body is not valid JSON",
    # (query and path parameters that fail validation get 422 `validation_error`)
    401: "Missing, unknown, revoked or expired API key (`unauthorized`)",
    403: "The key's role or scope does not allow this (`forbidden`)",
    404: "Unknown time bank or resource (`not_found`)",
    409: "Conflict with the ledger's state (see `code`)",
    410: "The cursor is older than the events kept (`cursor_expired`): start again without it",
    413: "Body over 1 MiB (`payload_too_large`)",
    422: "Invalid input (`validation_error`, `idempotency_key_reused`)",
    429: "Rate limited (`rate_limited`), see Retry-After",
    503: "Database unreachable (`unavailable`)",
}


KEYED_CONFLICTS = ("duplicate", "idempotency_in_flight")


def problems(
    *statuses: int, conflict: Sequence[str] = (), keyed: bool = False
) -> dict[int, ResponseSpec]:
    """OpenAPI error responses for a route: the given statuses plus 401, 429 (the per-key
    rate limit) and 503, always. ``keyed``: the route takes ``Idempotency-Key``, so it may
    answer 409 ``idempotency_in_flight`` (a retry while the first is running) and
    ``duplicate`` (a retry after an erasure purged the stored response)."""
    if keyed:
        statuses = (*statuses, 409)
        conflict = [*conflict, *(c for c in KEYED_CONFLICTS if c not in conflict)]
    out: dict[int, ResponseSpec] = {}
    for status in sorted({*statuses, 400, 401, 429, 503}):
        desc = _DESCRIPTIONS[status]
        if status == 409 and conflict:
            desc = "Conflict: " + ", ".join(f"`{c}`" for c in conflict)
        out[status] = ResponseSpec(
            data_container=Problem,
            description=desc,
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
    return out


def _example(status: int, code: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": f"https://timebank.example/problems/{code.replace('_', '-')}",
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
        "request_id": "6f1c2a9e0b7d4e3f8a5c1d2e3f4a5b6c",
    }


# One example problem per status, shown in the OpenAPI document.
PROBLEM_EXAMPLES: dict[str, dict[str, Any]] = {
    str(status): body
    for status, body in {
        400: _example(
            400,
            "malformed_request",
            "Malformed request",
            "The body is not valid JSON (line 1, column 12): send a JSON object with "
            "Content-Type: application/json",
        ),
        401: _example(401, "unauthorized", "Unauthorized", "Missing API key"),
        403: _example(403, "forbidden", "Forbidden", "A member key cannot do this"),
        404: _example(404, "not_found", "Not found", "No time bank 'north-ayrshire'"),
        409: _example(
            409,
            "balance_limit_exceeded",
            "Balance limit exceeded",
            "Alex Smith (member 01937a4e-6d10-7b9a-8e2f-5a7c1d3e9b40) would go below their "
            "lower limit of -600 minutes",
        ),
        410: _example(
            410,
            "cursor_expired",
            "Cursor expired",
            "Events after this cursor were deleted (kept 90 days): read the current state, "
            "then follow the feed from a cursor given now",
        ),
        413: _example(413, "payload_too_large", "Payload too large", "The body is over 1 MiB"),
        422: _example(
            422,
            "validation_error",
            "Validation error",
            "minuets: unknown field (did you mean 'minutes'?)",
            errors=[{"field": "minuets", "message": "unknown field (did you mean 'minutes'?)"}],
        ),
        429: _example(429, "rate_limited", "Rate limited", "Too many requests; retry in 2 s"),
        503: _example(503, "unavailable", "Service unavailable", "Database unreachable"),
    }.items()
}
