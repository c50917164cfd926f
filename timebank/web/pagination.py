"""Keyset pagination: ``{"items": [...], "next_cursor": ...}`` with an opaque cursor."""

from __future__ import annotations

import base64
import binascii
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


def decode_cursor(cursor: str | None) -> str | None:
    if cursor is None:
        return None
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        return base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise InvalidInput("cursor", "not a cursor this API gave out") from exc


def page(rows: list[Any], limit: int, key: Any) -> tuple[list[Any], str | None]:
    """Given up to ``limit + 1`` rows, return the page and the cursor for the next one."""
    if len(rows) > limit:
        rows = rows[:limit]
        return rows, encode_cursor(key(rows[-1]))
    return rows, None
