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
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from pydantic import BaseModel, Field
from pydantic.json_schema import SkipJsonSchema
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from timebank.bodies import FieldError
from timebank.db import READ_ONLY, lost_connection, session_ended, sqlstate
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
    "not_checkpointed": 409,
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


UNAVAILABLE_RETRY_AFTER = 2  # seconds: about a switch of primaries, or a restart's wait


class Problem(BaseModel):
    """RFC 9457 problem details, as every error response of this API. ``type`` is the
    address of a page of this service that explains the ``code``."""

    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[FieldError] | SkipJsonSchema[None] = Field(
        default=None, description="`validation_error`: each refused field"
    )
    request_id: str | SkipJsonSchema[None] = Field(
        default=None, description="Quote it when reporting a problem"
    )


def problem_type(code: str) -> str:
    """A problem's ``type``: the page of this service about its code (relative to the
    service's address, as RFC 9457 allows)."""
    return f"/problems/{code}"


def problem_response(
    status: int, code: str, title: str, detail: str, **extra: Any
) -> Response[dict[str, Any]]:
    body: dict[str, Any] = {
        "type": problem_type(code),
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
    if status == 503:  # the database unreachable, or between primaries: try again shortly
        headers["Retry-After"] = str(extra.get("retry_after") or UNAVAILABLE_RETRY_AFTER)
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


def _without_tag(rest: str) -> str:
    """``rest`` less its first segment (a union member's tag, which may hold brackets)."""
    depth = 0
    for i, c in enumerate(rest):
        depth += c == "["
        depth -= c == "]"
        if c == "." and depth == 0:
            return rest[i + 1 :]
    return ""


def _one_per_optional_field(errors: list[dict[str, str]]) -> list[dict[str, str]]:
    """An optional field (``X | None``) refused: pydantic reports the value against each
    member of the union — "name.none: Input should be null" beside the real reason under
    "name.function-after[…]". Keep the real reason, under the field's own name."""
    optional = {
        e["field"].removesuffix(".none")
        for e in errors
        if e["field"].endswith(".none") and e["message"] == "Input should be null"
    }
    out: list[dict[str, str]] = []
    for e in errors:
        name = e["field"]
        base = next((o for o in optional if name.startswith(o + ".")), None)
        if base is None:
            out.append(e)
            continue
        if name == base + ".none" and any(
            x["field"].startswith(base + ".") and x["field"] != name for x in errors
        ):
            continue
        inner = _without_tag(name[len(base) + 1 :])
        out.append({**e, "field": f"{base}.{inner}" if inner else base})
    return out


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
        errors = _one_per_optional_field(errors)
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
        # the route's own limit (an upload's is not the application's 1 MiB default)
        handler = request.scope.get("route_handler")
        upload = handler.opt.get(UPLOAD_LIMIT) if handler is not None else None
        if upload is not None:
            return problem_response(
                413,
                "payload_too_large",
                "Payload too large",
                f"The file is over the limit of {_size(upload)} ({upload:,} bytes) per sheet: "
                "split it into several sheets",
            )
        limit = request.app.state.settings.max_body_bytes
        if isinstance(handler, HTTPRouteHandler):
            limit = handler.resolve_request_max_body_size() or limit
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
    # A write refused by a read-only server (25006) reached a standby: the primaries are
    # switching; the connection was dropped and the next one finds the new primary.
    state = sqlstate(exc)
    if session_ended(state) or state[:2] in ("53", "58") or state in ("57014", "55P03"):
        return True
    # A serialization failure that escaped the write's own retries, or a report's query
    # cancelled on a read replica by a conflict with recovery (also 40001): try again.
    if state in (READ_ONLY, "40001") or (
        isinstance(exc, DBAPIError) and exc.connection_invalidated
    ):
        return True
    return lost_connection(exc)


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
    413: "Body over the limit, 1 MiB unless the operation says otherwise (`payload_too_large`)",
    422: "Invalid input (`validation_error`)",
    410: "The cursor is older than the events kept (`cursor_expired`): start again without it",
    429: "Rate limited (`rate_limited`), see Retry-After",
    503: "Database unreachable (`unavailable`)",
}


KEYED_CONFLICTS = ("duplicate", "idempotency_in_flight")


# Route option: the most an upload route's file may weigh (its body limit allows a little
# more, for a multipart form's framing); a 413 names this figure.
UPLOAD_LIMIT = "upload_limit_bytes"


def problems(
    *statuses: int,
    conflict: Sequence[str] = (),
    keyed: bool = False,
    upload_limit: int | None = None,
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
        if status == 413 and upload_limit is not None:
            desc = f"The file is over {_size(upload_limit)} (`payload_too_large`)"
        if status == 422 and keyed:
            desc = "Invalid input (`validation_error`), or an Idempotency-Key reused with "
            desc += "another request (`idempotency_key_reused`)"
        out[status] = ResponseSpec(
            data_container=Problem,
            description=desc,
            media_type=PROBLEM_JSON,
            generate_examples=False,
        )
    return out


def _example(status: int, code: str, title: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": problem_type(code),
        "title": title,
        "status": status,
        "detail": detail,
        "code": code,
        **extra,
        "request_id": "6f1c2a9e0b7d4e3f8a5c1d2e3f4a5b6c",
    }


# One example problem per code, shown in the OpenAPI document (an operation's error
# response shows the example of the first code it lists).
PROBLEM_EXAMPLES: dict[str, dict[str, Any]] = {
    "malformed_request": _example(
        400,
        "malformed_request",
        "Malformed request",
        "The body is not valid JSON (line 1, column 12): send a JSON object with "
        "Content-Type: application/json",
    ),
    "unauthorized": _example(401, "unauthorized", "Unauthorized", "Missing API key"),
    "forbidden": _example(403, "forbidden", "Forbidden", "A member key cannot do this"),
    "not_found": _example(404, "not_found", "Not found", "No time bank 'north-ayrshire'"),
    "balance_limit_exceeded": _example(
        409,
        "balance_limit_exceeded",
        "Balance limit exceeded",
        "Alex Smith (member 01937a4e-6d10-7b9a-8e2f-5a7c1d3e9b40) would go to −10 h 30 min, "
        "below the lower limit of −10 h (balance −9 h, this exchange −1 h 30 min)",
        account_id="01937a4e-6d10-7b9a-8e2f-000000000002",
        party={"type": "member", "id": "01937a4e-6d10-7b9a-8e2f-5a7c1d3e9b40"},
        balance_minutes=-540,
        change_minutes=-90,
        min_balance_minutes=-600,
        max_balance_minutes=None,
    ),
    "party_inactive": _example(
        409,
        "party_inactive",
        "Party inactive",
        "A party is no longer active (suspended, left or erased)",
    ),
    "already_reversed": _example(
        409, "already_reversed", "Already reversed", "This exchange was already reversed"
    ),
    "not_reversible": _example(
        409, "not_reversible", "Not reversible", "A reversal cannot be reversed"
    ),
    "not_pending": _example(
        409, "not_pending", "Not pending", "This exchange is recorded, not pending"
    ),
    "idempotency_in_flight": _example(
        409,
        "idempotency_in_flight",
        "Idempotency key in flight",
        "A request with this Idempotency-Key is still being answered; retry in a moment",
    ),
    "duplicate": _example(
        409,
        "duplicate",
        "Duplicate",
        "external_ref 'nov-12' was already recorded in this time bank",
    ),
    "import_closed": _example(
        409, "import_closed", "Sheet import closed", "This sheet was committed already"
    ),
    "not_checkpointed": _example(
        409,
        "not_checkpointed",
        "Not in a checkpoint yet",
        "No signed checkpoint covers this exchange yet: ask again in a few minutes",
    ),
    "cursor_expired": _example(
        410,
        "cursor_expired",
        "Cursor expired",
        "Events after this cursor were deleted (kept 90 days): read the current state, "
        "then follow the feed from a cursor given now",
    ),
    "payload_too_large": _example(
        413,
        "payload_too_large",
        "Payload too large",
        "The body is over the limit of 1 MiB (1,048,576 bytes); send less at once (a batch "
        "takes up to 1000 exchanges)",
    ),
    "validation_error": _example(
        422,
        "validation_error",
        "Validation error",
        "minuets: unknown field (did you mean 'minutes'?)",
        errors=[{"field": "minuets", "message": "unknown field (did you mean 'minutes'?)"}],
    ),
    "idempotency_key_reused": _example(
        422,
        "idempotency_key_reused",
        "Idempotency key reused",
        "This Idempotency-Key was used with another request; use a new key for a new request",
    ),
    "rate_limited": _example(
        429, "rate_limited", "Rate limited", "Too many requests; retry in 2 s", retry_after=2
    ),
    "unavailable": _example(503, "unavailable", "Service unavailable", "Database unreachable"),
    "report_timeout": _example(
        503,
        "report_timeout",
        "Report timed out",
        "The report ran past its time limit; try a shorter period, or later",
    ),
}


# What each code means, for its page (``/problems/<code>``, a problem's ``type``).
PROBLEM_PAGES: dict[str, str] = {
    "unauthorized": "The request has no API key, or its key is unknown, revoked or expired. "
    "Send Authorization: Bearer <api key>.",
    "forbidden": "The key's role or scope does not allow this (a member key acts for its own "
    "member only; a funder key reads reports only).",
    "not_found": "No such time bank, or no such thing in it — or one outside the key's scope, "
    "which is answered the same way.",
    "validation_error": "A field or query parameter is not acceptable: `errors` lists each, "
    "with what to do about it.",
    "idempotency_key_reused": "This Idempotency-Key was used with another request. A key "
    "stands for one request: use a new one for a new request.",
    "balance_limit_exceeded": "The exchange would take an account further past its balance "
    "limit. To a member key, another member's figures are never given: it says only that "
    "the other member's balance limit would be passed.",
    "party_inactive": "A party is suspended, has left or was erased: it takes part in no new "
    "exchange.",
    "already_reversed": "The exchange was reversed already; an exchange is reversed at most once.",
    "not_reversible": "Only a recorded exchange that is not itself a reversal can be reversed.",
    "not_pending": "The exchange is no longer pending (recorded, rejected, cancelled or "
    "expired): it cannot be decided again.",
    "idempotency_in_flight": "A request with the same Idempotency-Key is still being "
    "answered: retry in a moment, with the same key.",
    "duplicate": "A unique value (a slug, an external_ref, a membership number) is taken.",
    "import_closed": "The sheet import was committed or discarded already.",
    "not_checkpointed": "No signed checkpoint covers this exchange (or tree size) yet: the "
    "sealer adds new exchanges within seconds and signs a checkpoint every few minutes, so "
    "ask again later.",
    "cursor_expired": "The events after this cursor were deleted (they are kept 90 days): "
    "read the current state, then follow the feed again without a cursor.",
    "batch_aborted": "An item of an atomic batch that would have been recorded, had another "
    "not been refused: nothing of the batch was recorded.",
    "rate_limited": "Too many requests with this key: wait for Retry-After seconds.",
    "report_timeout": "The report ran past its time limit: try a shorter period or later.",
    "malformed_request": "The body is not valid JSON: send a JSON object with Content-Type: "
    "application/json.",
    "method_not_allowed": "The path does not take this method: see the Allow header.",
    "request_timeout": "The request did not arrive in time.",
    "payload_too_large": "The body is over the limit: send less at once.",
    "header_too_large": "The request's head is over the limit.",
    "internal_error": "Something went wrong on our side: quote request_id when reporting it.",
    "unavailable": "The database is unreachable for a moment: retry (with the same "
    "Idempotency-Key for a write).",
}
