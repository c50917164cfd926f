"""Keyset pagination: ``{"items": [...], "next_cursor": ...}`` with an opaque cursor."""

from __future__ import annotations

import base64
import binascii
import uuid
from datetime import date
from typing import Any, Generic, TypeVar

from litestar.params import Parameter
from pydantic import BaseModel

from timebank.errors import InvalidInput

T = TypeVar("T")

DEFAULT_LIMIT = 50
MAX_LIMIT = 500

LimitParam = Parameter(
    default=None,
    ge=1,
    le=MAX_LIMIT,
    description=f"Page size, 1–{MAX_LIMIT} (default {DEFAULT_LIMIT})",
)


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None


def check_limit(limit: int | None) -> int:
    if limit is None:
        return DEFAULT_LIMIT
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput("limit", f"must be between 1 and {MAX_LIMIT}")
    return limit


def encode_cursor(value: Any) -> str:
    return base64.urlsafe_b64encode(str(value).encode()).decode().rstrip("=")


def _refused() -> InvalidInput:
    return InvalidInput("cursor", "not a cursor this API gave out")


def _text(cursor: str) -> str:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
    except (binascii.Error, UnicodeError, ValueError) as exc:
        raise _refused() from exc


def id_cursor(cursor: str | None) -> uuid.UUID | None:
    """The id a page of id-ordered rows (exchanges, members, keys...) continues after."""
    if cursor is None:
        return None
    try:
        return uuid.UUID(_text(cursor))
    except ValueError as exc:
        raise _refused() from exc


MAX_SEQUENCE = 2**63 - 1


def seq_cursor(cursor: str | None) -> int | None:
    """The sequence number a page of entries (statement lines, audit events) continues
    after: ASCII digits only, within a 64-bit column."""
    if cursor is None:
        return None
    text = _text(cursor)
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_SEQUENCE:
        raise _refused()
    return int(text)


def page(rows: list[Any], limit: int, key: Any) -> tuple[list[Any], str | None]:
    """Given up to ``limit + 1`` rows, return the page and the cursor for the next one."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(key(rows[-1]))
    return rows, None


def statement_cursor(cursor: str | None) -> tuple[date, int] | None:
    """The (occurred_on, entry id) a page of a statement continues after."""
    if cursor is None:
        return None
    day, _, entry = _text(cursor).partition("/")
    if not (entry.isascii() and entry.isdigit()) or int(entry) > MAX_SEQUENCE:
        raise _refused()
    try:
        return date.fromisoformat(day), int(entry)
    except ValueError as exc:
        raise _refused() from exc


def encode_statement_cursor(after: tuple[date, int]) -> str:
    return encode_cursor(f"{after[0].isoformat()}/{after[1]}")
