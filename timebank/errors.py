"""Domain errors: a refused request, named by a stable ``code``. No HTTP here: the web layer
(:mod:`timebank.web.problems`) maps each code to its status, in one table."""

from __future__ import annotations

import re
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


class BatchAborted(DomainError):
    """An item of an atomic batch that would have been recorded, had another not been refused."""

    code, title = "batch_aborted", "Batch aborted"


class RateLimited(DomainError):
    code, title = "rate_limited", "Rate limited"


class ReportTimeout(DomainError):
    """A report query ran past ``TIMEBANK_REPORT_TIMEOUT_MS`` and was cancelled: the
    database is busy or the request too large (many banks, a long period)."""

    code, title = "report_timeout", "Report timed out"


class RequestTimeout(DomainError):
    code, title = "request_timeout", "Request timeout"


_NAMED = re.compile(r"^(?:Value error, )?([A-Za-z_][\w.\[\]]*): (.+)$", re.DOTALL)


def field_error(field: str | None, message: str) -> dict[str, str]:
    """One ``{"field", "message"}``. A model-level check names its field by starting its
    message with ``"<field>: "`` (pydantic gives such errors no location)."""
    if not field:
        named = _NAMED.match(message)
        if named:
            return {"field": named.group(1), "message": named.group(2)}
        return {"field": "body", "message": message.removeprefix("Value error, ")}
    if message == BLANK_PATTERN_MESSAGE:
        message = "must not be blank (spaces, tabs and line breaks alone are not a value)"
    return {"field": field, "message": message.removeprefix("Value error, ")}


# pydantic's words for a required text that is blank (``timebank.bodies.NOT_BLANK``)
BLANK_PATTERN_MESSAGE = "String should match pattern '[^ \\t\\n\\r]'"
