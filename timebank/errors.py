"""Domain errors: a refused request, named by a stable ``code``. No HTTP here: the web layer
(:mod:`timebank.web.problems`) maps each code to its status, in one table."""

from __future__ import annotations

import difflib
import re
import typing
from typing import Any


class DomainError(Exception):
    """A refused request. Subclasses name a stable ``code`` and a short ``title``."""

    code = "error"
    title = "Error"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra = extra


class Unauthorized(DomainError):
    code, title = "unauthorized", "Unauthorized"


class Forbidden(DomainError):
    code, title = "forbidden", "Forbidden"


class NotFound(DomainError):
    code, title = "not_found", "Not found"


class InvalidInput(DomainError):
    """Invalid input, with a list of ``{"field", "message"}``."""

    code, title = "validation_error", "Validation error"

    def __init__(self, field: str, message: str, *more: tuple[str, str]) -> None:
        errors = [{"field": field, "message": message}] + [
            {"field": f, "message": m} for f, m in more
        ]
        super().__init__(f"{field}: {message}", errors=errors)

    @classmethod
    def of(cls, errors: list[dict[str, str]]) -> InvalidInput:
        """One error for several ``{"field", "message"}`` at once."""
        first, *more = errors
        exc = cls(first["field"], first["message"], *((e["field"], e["message"]) for e in more))
        exc.detail = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        return exc


class BalanceLimitExceeded(DomainError):
    code, title = "balance_limit_exceeded", "Balance limit exceeded"


class CursorExpired(DomainError):
    """A feed's cursor from before the retained events: some it would lead to are gone."""

    code, title = "cursor_expired", "Cursor expired"


class PartyInactive(DomainError):
    code, title = "party_inactive", "Party inactive"


class AlreadyReversed(DomainError):
    code, title = "already_reversed", "Already reversed"


class NotReversible(DomainError):
    code, title = "not_reversible", "Not reversible"


class NotPending(DomainError):
    code, title = "not_pending", "Not pending"


class IdempotencyKeyReused(DomainError):
    code, title = "idempotency_key_reused", "Idempotency key reused"


class IdempotencyInFlight(DomainError):
    code, title = "idempotency_in_flight", "Idempotency key in flight"


class Duplicate(DomainError):
    code, title = "duplicate", "Duplicate"


class ImportClosed(DomainError):
    code, title = "import_closed", "Sheet import closed"


class BatchAborted(DomainError):
    """An item of an atomic batch that would have been recorded, had another not been refused."""

    code, title = "batch_aborted", "Batch aborted"


class RateLimited(DomainError):
    code, title = "rate_limited", "Rate limited"


class ReportTimeout(DomainError):
    """A report query ran past ``TIMEBANK_REPORT_TIMEOUT_MS`` and was cancelled: the
    database is busy or the request too large (many banks, a long period)."""

    code, title = "report_timeout", "Report timed out"


class NotCheckpointed(DomainError):
    """An exchange (or a tree size) that no signed checkpoint covers yet: the sealer adds it
    within seconds and signs a checkpoint every few minutes, so a retry later succeeds."""

    code, title = "not_checkpointed", "Not in a checkpoint yet"


class RequestTimeout(DomainError):
    code, title = "request_timeout", "Request timeout"


_NAMED = re.compile(r"^(?:Value error, )?([A-Za-z_][\w.\[\]]*): (.+)$", re.DOTALL)

# One wording for each kind of value, in bodies and query strings alike.
DATE_MESSAGE = "must be a date as YYYY-MM-DD, e.g. 2026-11-28"
DATETIME_MESSAGE = "must be a date and time as YYYY-MM-DDTHH:MM:SSZ, e.g. 2026-11-28T09:30:00Z"
UUID_MESSAGE = "must be an id, a UUID such as 01937a4e-58c2-7c3e-9a51-2f0c6f4b8d21"
# pydantic's (bodies) and msgspec's (Litestar's query parameters) words → ours
_REWORDED = [
    (
        re.compile(r"^(Input should be a valid date\b(?! ?time)|Invalid RFC3339 encoded date$)"),
        DATE_MESSAGE,
    ),
    (
        re.compile(r"^(Input should be a valid datetime|Invalid RFC3339 encoded datetime)"),
        DATETIME_MESSAGE,
    ),
    (re.compile(r"^(Input should be a valid UUID|Invalid UUID)"), UUID_MESSAGE),
    (re.compile(r"^Field required$"), "required: this field is missing"),
]


def _fields_at(model: Any, path: list[str]) -> list[str]:
    """The field names a client may send at ``path`` (without the last part) of a body
    ``model``: pydantic models, walked through optional and list fields."""
    current: Any = model
    for part in path[:-1]:
        if part.isdigit():
            continue
        fields = getattr(current, "model_fields", None)
        if not fields or part not in fields:
            return []
        annotation: Any = fields[part].annotation
        for _ in range(4):  # unwrap Optional[...], list[...], Annotated[...]
            if hasattr(annotation, "model_fields"):
                break
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            annotation = next(
                (a for a in args if hasattr(a, "model_fields")), args[0] if args else None
            )
        current = annotation
    return list(getattr(current, "model_fields", None) or [])


def _unknown_field(field: str, model: Any) -> str:
    path = field.split(".")
    known = _fields_at(model, path) if model is not None else []
    close = difflib.get_close_matches(path[-1], known, n=1, cutoff=0.6)
    if close:
        return f"unknown field (did you mean '{close[0]}'?)"
    if known:
        return "unknown field; the fields here are " + ", ".join(known)
    return "unknown field"


def field_error(field: str | None, message: str, model: Any = None) -> dict[str, str]:
    """One ``{"field", "message"}`` in words a person can act on. A model-level check names
    its field by starting its message with ``"<field>: "`` (pydantic gives such errors no
    location). ``model``: the body's model, to name the closest known field to an unknown
    one."""
    message = message.removeprefix("Value error, ")
    if not field:
        named = _NAMED.match(message)
        if named:
            return {"field": named.group(1), "message": named.group(2)}
        return {"field": "body", "message": message}
    if message == BLANK_PATTERN_MESSAGE:
        message = "must not be blank (spaces, tabs and line breaks alone are not a value)"
    elif message == "Extra inputs are not permitted":
        message = _unknown_field(field, model)
    else:
        for pattern, words in _REWORDED:
            if pattern.match(message):
                message = words
                break
    return {"field": field, "message": message}


# pydantic's words for a required text that is blank (``timebank.bodies.NOT_BLANK``)
BLANK_PATTERN_MESSAGE = "String should match pattern '[^ \\t\\n\\r]'"
