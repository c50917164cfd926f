from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

SLUG = r"^[a-z0-9][a-z0-9-]{1,62}$"


class TimeBankSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_min_balance_minutes: int | None = Field(default=-600, le=0, ge=-10_000_000)
    member_max_balance_minutes: int | None = Field(default=None, ge=0, le=10_000_000)
    organisation_min_balance_minutes: int | None = Field(default=None, le=0, ge=-10_000_000)
    organisation_max_balance_minutes: int | None = Field(default=None, ge=0, le=10_000_000)
    max_exchange_minutes: int = Field(default=1440, gt=0, le=100_000)
    starting_grant_minutes: int = Field(default=0, ge=0, le=100_000)
    time_zone: str = Field(default="Europe/London", max_length=64)
    suppression_threshold: int = Field(default=10, ge=5, le=1000)
    pending_expiry_days: int = Field(default=30, ge=1, le=3650)


class TimeBankSettingsPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    member_min_balance_minutes: int | None = Field(default=None, le=0, ge=-10_000_000)
    member_max_balance_minutes: int | None = Field(default=None, ge=0, le=10_000_000)
    organisation_min_balance_minutes: int | None = Field(default=None, le=0, ge=-10_000_000)
    organisation_max_balance_minutes: int | None = Field(default=None, ge=0, le=10_000_000)
    max_exchange_minutes: int | None = Field(default=None, gt=0, le=100_000)
    starting_grant_minutes: int | None = Field(default=None, ge=0, le=100_000)
    time_zone: str | None = Field(default=None, max_length=64)
    suppression_threshold: int | None = Field(default=None, ge=5, le=1000)
    pending_expiry_days: int | None = Field(default=None, ge=1, le=3650)


class TimeBankCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str = Field(pattern=SLUG)
    name: str = Field(min_length=1, max_length=200)
    settings: TimeBankSettings | None = None


class TimeBankPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(default=None, min_length=1, max_length=200)
    settings: TimeBankSettingsPatch | None = None


class TimeBankOut(BaseModel):
    id: uuid.UUID
    slug: str
    name: str
    pool_account_id: uuid.UUID
    settings: TimeBankSettings
    created_at: datetime


class CategoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    slug: str = Field(pattern=SLUG)
    name: str = Field(min_length=1, max_length=100)


class CategoryOut(BaseModel):
    slug: str
    name: str


SETTING_FIELDS = list(TimeBankSettings.model_fields)
