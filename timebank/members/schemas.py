from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from timebank.bodies import NOT_BLANK, Email, JsonBody, NameText, Trimmed
from timebank.members.models import Disability, Ethnicity, Gender, MemberStatus
from timebank.namesearch import NameWarning


class _In(JsonBody):
    """Text fields are trimmed after their length is checked (see ``timebank.bodies``)."""


class MemberCreate(_In):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "display_name": "Alex Smith",
                    "email": "alex@example.org",
                    "locality": "Irvine",
                    "birth_year": 1958,
                    "gender": "female",
                    "statistics_consent": True,
                    "joined_on": "2026-11-02",
                    "external_ref": "M-0042",
                }
            ]
        }
    )
    display_name: Annotated[
        str, Field(min_length=1, max_length=100, pattern=NOT_BLANK), NameText, Trimmed
    ]
    email: Email | None = None
    phone: Annotated[str, Field(max_length=50), Trimmed] | None = None
    locality: Annotated[str, Field(max_length=100), Trimmed] | None = None
    postcode: Annotated[str, Field(max_length=16), Trimmed] | None = None
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    gender: Gender | None = None
    disability: Disability | None = None
    ethnicity: Ethnicity | None = None
    statistics_consent: bool = False
    joined_on: date | None = None
    external_ref: (
        Annotated[str, Field(min_length=1, max_length=200, pattern=NOT_BLANK), Trimmed] | None
    ) = None


class MemberPatch(_In):
    """Only the fields given change; null clears a field, except those that cannot be
    empty (display_name, statistics_consent, joined_on, status: null is refused)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"locality": "Kilwinning", "phone": None}]}
    )
    display_name: (
        Annotated[str, Field(min_length=1, max_length=100, pattern=NOT_BLANK), NameText, Trimmed]
        | SkipJsonSchema[None]
    ) = None
    email: Email | None = None
    phone: Annotated[str, Field(max_length=50), Trimmed] | None = None
    locality: Annotated[str, Field(max_length=100), Trimmed] | None = None
    postcode: Annotated[str, Field(max_length=16), Trimmed] | None = None
    birth_year: int | None = Field(default=None, ge=1900, le=2100)
    gender: Gender | None = None
    disability: Disability | None = None
    ethnicity: Ethnicity | None = None
    statistics_consent: bool | SkipJsonSchema[None] = None
    joined_on: date | SkipJsonSchema[None] = None
    external_ref: (
        Annotated[str, Field(min_length=1, max_length=200, pattern=NOT_BLANK), Trimmed] | None
    ) = None
    status: MemberStatus | SkipJsonSchema[None] = None
    left_on: date | None = None


class MemberOut(BaseModel):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "01937a4e-58c2-7c3e-9a51-2f0c6f4b8d21",
                    "account_id": "01937a4e-58c2-7c3e-9a51-000000000001",
                    "display_name": "Alex Smith",
                    "email": "alex@example.org",
                    "phone": None,
                    "locality": "Irvine",
                    "postcode": None,
                    "birth_year": 1958,
                    "gender": "female",
                    "disability": None,
                    "ethnicity": None,
                    "statistics_consent": True,
                    "consent_recorded_at": "2026-11-02T09:30:00Z",
                    "joined_on": "2026-11-02",
                    "left_on": None,
                    "status": "active",
                    "external_ref": "M-0042",
                    "created_at": "2026-11-02T09:30:00Z",
                }
            ]
        },
    )
    id: uuid.UUID
    account_id: uuid.UUID
    display_name: str
    email: str | None
    phone: str | None
    locality: str | None
    postcode: str | None
    birth_year: int | None
    gender: Gender | None
    disability: Disability | None
    ethnicity: Ethnicity | None
    statistics_consent: bool
    consent_recorded_at: datetime | None
    joined_on: date
    left_on: date | None
    status: MemberStatus
    external_ref: str | None
    created_at: datetime


class MemberCreated(MemberOut):
    """A new member, and who already has the same or a look-alike name (allowed, but worth a
    look: the same person registered twice?)."""

    warnings: list[NameWarning] = Field(default_factory=list)


class DirectoryEntry(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "type": "member",
                    "id": "01937a4e-58c2-7c3e-9a51-2f0c6f4b8d21",
                    "display_name": "Alex Smith",
                }
            ]
        }
    )
    type: str = Field(description="member or organisation")
    id: uuid.UUID
    display_name: str
