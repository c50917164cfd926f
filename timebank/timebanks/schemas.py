from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from timebank.bodies import JsonBody, NameText

SLUG = r"^[a-z0-9][a-z0-9-]{1,62}$"


class TimeBankSettings(JsonBody):
    member_min_balance_minutes: int | None = Field(default=-600, le=0, ge=-10_000_000)
    member_max_balance_minutes: int | None = Field(default=None, ge=0, le=10_000_000)
    organisation_min_balance_minutes: int | None = Field(default=None, le=0, ge=-10_000_000)
    organisation_max_balance_minutes: int | None = Field(default=None, ge=0, le=10_000_000)
    max_exchange_minutes: int = Field(default=1440, gt=0, le=100_000)
    starting_grant_minutes: int = Field(default=0, ge=0, le=100_000)
    time_zone: str = Field(default="Europe/London", max_length=64)
    suppression_threshold: int = Field(default=10, ge=5, le=1000)
    pending_expiry_days: int = Field(default=30, ge=1, le=3650)


class TimeBankSettingsPatch(JsonBody):
    """Only the settings given change; null makes a limit unbounded (the others cannot be
    null)."""

    member_min_balance_minutes: int | None = Field(default=None, le=0, ge=-10_000_000)
    member_max_balance_minutes: int | None = Field(default=None, ge=0, le=10_000_000)
    organisation_min_balance_minutes: int | None = Field(default=None, le=0, ge=-10_000_000)
    organisation_max_balance_minutes: int | None = Field(default=None, ge=0, le=10_000_000)
    max_exchange_minutes: Annotated[int, Field(gt=0, le=100_000)] | SkipJsonSchema[None] = None
    starting_grant_minutes: Annotated[int, Field(ge=0, le=100_000)] | SkipJsonSchema[None] = None
    time_zone: str | SkipJsonSchema[None] = Field(default=None, max_length=64)
    suppression_threshold: Annotated[int, Field(ge=5, le=1000)] | SkipJsonSchema[None] = None
    pending_expiry_days: Annotated[int, Field(ge=1, le=3650)] | SkipJsonSchema[None] = None


class TimeBankCreate(JsonBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "slug": "north-ayrshire",
                    "name": "North Ayrshire Time Bank",
                    "settings": {"member_min_balance_minutes": -600, "time_zone": "Europe/London"},
                }
            ]
        }
    )
    slug: str = Field(pattern=SLUG)
    name: Annotated[str, NameText] = Field(min_length=1, max_length=200)
    settings: TimeBankSettings | None = None


class TimeBankPatch(JsonBody):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"settings": {"member_min_balance_minutes": -900}}]}
    )
    name: Annotated[str, NameText] | None = Field(default=None, min_length=1, max_length=200)
    settings: TimeBankSettingsPatch | None = None


class TimeBankOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "01937a4d-0000-7abc-8def-0123456789aa",
                    "slug": "north-ayrshire",
                    "name": "North Ayrshire Time Bank",
                    "pool_account_id": "01937a4d-ffee-7abc-8def-0123456789ab",
                    "settings": {
                        "member_min_balance_minutes": -600,
                        "member_max_balance_minutes": None,
                        "organisation_min_balance_minutes": None,
                        "organisation_max_balance_minutes": None,
                        "max_exchange_minutes": 1440,
                        "starting_grant_minutes": 0,
                        "time_zone": "Europe/London",
                        "suppression_threshold": 10,
                        "pending_expiry_days": 30,
                    },
                    "created_at": "2026-11-01T08:00:00Z",
                }
            ]
        }
    )
    id: uuid.UUID
    slug: str
    name: str
    pool_account_id: uuid.UUID
    settings: TimeBankSettings
    created_at: datetime


class CategoryCreate(JsonBody):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"slug": "dog-walking", "name": "Dog walking", "name_cy": "Mynd â chŵn am dro"}
            ]
        }
    )
    slug: str = Field(pattern=SLUG)
    name: Annotated[str, NameText] = Field(min_length=1, max_length=100)
    name_cy: Annotated[str, NameText] | SkipJsonSchema[None] = Field(
        default=None, min_length=1, max_length=100, description="The name in Welsh (optional)."
    )


class CategoryPatch(JsonBody):
    """Rename (in English or Welsh; ``name_cy: null`` removes the Welsh name), retire
    (``retired: true``: no new exchanges; old ones keep it) or bring back."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"name": "Gardening", "retired": False}]}
    )
    name: Annotated[str, NameText] | SkipJsonSchema[None] = Field(
        default=None, min_length=1, max_length=100
    )
    name_cy: Annotated[str, NameText] | None = Field(default=None, min_length=1, max_length=100)
    retired: bool | SkipJsonSchema[None] = None


class CategoryOut(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"slug": "dog-walking", "name": "Dog walking", "name_cy": None, "retired": False}
            ]
        }
    )
    slug: str
    name: str
    name_cy: str | None = Field(description="The name in Welsh; null when none is given.")
    retired: bool = Field(
        description="A retired category stays on old exchanges but is refused for new ones."
    )

    @classmethod
    def of(cls, cat: Any) -> CategoryOut:
        return cls(
            slug=cat.slug, name=cat.name, name_cy=cat.name_cy, retired=cat.retired_at is not None
        )


SETTING_FIELDS = list(TimeBankSettings.model_fields)
