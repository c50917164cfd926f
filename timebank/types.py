"""Column types shared by the models."""

from __future__ import annotations

import enum
from typing import Any

from advanced_alchemy.types import DateTimeUTC
from sqlalchemy import Enum

__all__ = ["DateTimeUTC", "str_enum"]


def str_enum(cls: type[enum.StrEnum], name: str) -> Any:
    """A portable enum column: VARCHAR plus a named CHECK constraint on both engines."""
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=32,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )
